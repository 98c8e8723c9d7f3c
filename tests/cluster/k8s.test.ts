// The Kubernetes manifests (cluster/k8s), checked offline (no API server runs here): kustomize
// renders the example overlay, every object validates against the Kubernetes schema
// (kubernetes-models), and the wiring holds: the workers reach the coordinator through the
// headless Service's DNS name, the Secret is mounted where WEFT_TOKEN_FILE points, the probes hit
// /healthz and /readyz on the coordinator's port, and the Indexed Job runs N workers where the
// coordinator waits for N.

import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ROOT } from '../helpers/cli.ts';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
if (!kubectl)
  console.log('kubectl not found: cluster/k8s is not rendered or validated here (skipped)');
const dir = mkdtempSync(join(tmpdir(), 'weft-k8s-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The example overlay rendered (with a token file, which users create and git ignores). */
function render(): K8sObject[] {
  cpSync(join(ROOT, 'cluster/k8s'), join(dir, 'k8s'), { recursive: true });
  writeFileSync(join(dir, 'k8s/overlays/example/token.txt'), 'a test secret\n');
  const r = spawnSync('kubectl', ['kustomize', join(dir, 'k8s/overlays/example')], {
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject);
}

/** The kubernetes-models class for an object's apiVersion and kind. */
async function modelOf(o: K8sObject): Promise<new (data: unknown) => { validate(): void }> {
  const group = o.apiVersion.includes('/') ? o.apiVersion : `core/${o.apiVersion}`;
  const module = (await import(`kubernetes-models/${group.replace('core/', '')}`)) as Record<
    string,
    new (data: unknown) => { validate(): void }
  >;
  return module[o.kind];
}

it.skipIf(!kubectl)('renders, validates against the schema, and is wired together', async () => {
  const objects = render();
  const byKind = (kind: string, name: string) =>
    objects.find((o) => o.kind === kind && o.metadata.name === name) as K8sObject;
  for (const o of objects) {
    const Model = await modelOf(o);
    expect(Model, `${o.apiVersion} ${o.kind}`).toBeDefined();
    expect(() => new Model(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
  }
  expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
    'Job/weft-coordinator',
    'Job/weft-workers',
    'PersistentVolumeClaim/weft-run',
    'Secret/weft-token',
    'Service/weft-coordinator',
  ]);
  const service = byKind('Service', 'weft-coordinator');
  const svc = service.spec as {
    clusterIP: string;
    selector: Record<string, string>;
    ports: { port: number }[];
  };
  expect(svc.clusterIP).toBe('None');
  type Pod = {
    metadata: { labels: Record<string, string> };
    spec: {
      containers: {
        env: { name: string; value: string }[];
        volumeMounts: { name: string; mountPath: string }[];
        livenessProbe?: { httpGet: { path: string; port: string } };
        readinessProbe?: { httpGet: { path: string; port: string } };
        ports?: { name: string; containerPort: number }[];
      }[];
      volumes: { name: string; secret?: { secretName: string } }[];
    };
  };
  const pod = (job: K8sObject) => (job.spec as { template: Pod }).template;
  const env = (p: Pod, name: string) =>
    p.spec.containers[0].env.find((e) => e.name === name)?.value;
  const coordinator = byKind('Job', 'weft-coordinator');
  const workers = byKind('Job', 'weft-workers');
  const cp = pod(coordinator);
  const wp = pod(workers);
  // the Service selects the coordinator's pod, on its port
  expect(cp.metadata.labels).toMatchObject(svc.selector);
  expect(cp.spec.containers[0].ports?.[0].containerPort).toBe(svc.ports[0].port);
  // workers connect to the Service's DNS name
  expect(env(wp, 'WEFT_CONNECT')).toBe(`ws://${service.metadata.name}:${svc.ports[0].port}`);
  // the Secret is mounted where WEFT_TOKEN_FILE points, in both
  for (const p of [cp, wp]) {
    const file = env(p, 'WEFT_TOKEN_FILE') as string;
    const volume = p.spec.volumes.find((v) => v.secret?.secretName === 'weft-token');
    const mount = p.spec.containers[0].volumeMounts.find((m) => m.name === volume?.name);
    expect(file).toBe(`${mount?.mountPath}/token`);
  }
  expect(Object.keys(byKind('Secret', 'weft-token').data ?? {})).toEqual(['token']);
  // probes on the coordinator's port
  const c = cp.spec.containers[0];
  expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'weft' });
  expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'weft' });
  expect(c.ports?.[0].name).toBe('weft');
  // an Indexed Job of N workers, and a coordinator waiting for N
  const spec = workers.spec as { completionMode: string; parallelism: number; completions: number };
  expect(spec.completionMode).toBe('Indexed');
  expect(spec.parallelism).toBe(4);
  expect(spec.completions).toBe(4);
  expect(env(cp, 'WEFT_WORKERS')).toBe('4');
});
