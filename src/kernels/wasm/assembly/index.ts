// Entry point of the wasm kernels module (AssemblyScript): everything the wasm backend calls.
// tile6 is exported only to keep it out of gemm (see its comment); the backend does not call it
export { gemm, gemmPanelRows, gemv, colSumAdd, tile6 } from './gemm';
export { maddProbe } from './madd';
export {
  encoderForward,
  encoderBackward,
  layernormForward,
  layernormBackward,
  causalSoftmax,
  causalSoftmaxBackward,
  geluForward,
  geluBackward,
  residualForward,
  residualBackward,
  crossEntropyForward,
  crossEntropyBackward,
  adamwUpdate,
  accumulateExact,
  fromExact,
} from './nn';
