// Entry point of the wasm kernels module (AssemblyScript): everything the wasm backend calls.
export { gemm, gemv, colSumAdd } from './gemm';
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
