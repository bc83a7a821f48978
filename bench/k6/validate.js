// k6: POST /api/licenses/validate at an edge, central or the baseline server, over many seeded
// licenses, each from its own bound IP (X-Forwarded-For, believed from loopback). The same
// scenario `make bench` measures with its own generator (bench/README.md).
//
//   k6 run -e BASE_URL=http://127.0.0.1:8081 bench/k6/validate.js                 # saturation
//   k6 run -e BASE_URL=http://127.0.0.1:8081 -e RATE=10000 -e P99_MS=1 bench/k6/validate.js
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=5000 -e P95_MS=100 bench/k6/validate.js
//
// KEYS: the CSV `celaest-bench seed` writes (license_key,ip_address,license_id), by default
// target/bench-run/keys.csv. RATE: requests per second (open loop, k6's constant-arrival-rate);
// without it, VUS virtual users send back to back (closed loop). DURATION (default 30s).
// P95_MS / P99_MS: fail the run when the percentile is above it (the targets).
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8081';
const RATE = Number(__ENV.RATE || 0);
const VUS = Number(__ENV.VUS || 32);
const DURATION = __ENV.DURATION || '30s';

const licenses = new SharedArray('licenses', () =>
  open(__ENV.KEYS || '../../target/bench-run/keys.csv')
    .split('\n')
    .slice(1)
    .filter((line) => line.length > 0)
    .map((line) => {
      const [key, ip] = line.split(',');
      return { key, ip };
    }),
);

const thresholds = { checks: ['rate>0.99'] };
const latency = [];
if (__ENV.P95_MS) latency.push(`p(95)<${Number(__ENV.P95_MS)}`);
if (__ENV.P99_MS) latency.push(`p(99)<=${Number(__ENV.P99_MS)}`);
if (latency.length > 0) thresholds.http_req_duration = latency;

export const options = {
  scenarios:
    RATE > 0
      ? {
          fixed_rate: {
            executor: 'constant-arrival-rate',
            rate: RATE,
            timeUnit: '1s',
            duration: DURATION,
            preAllocatedVUs: VUS,
            maxVUs: VUS * 8,
          },
        }
      : { saturation: { executor: 'constant-vus', vus: VUS, duration: DURATION } },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
  thresholds,
};

export default function () {
  const license = licenses[Math.floor(Math.random() * licenses.length)];
  const response = http.post(
    `${BASE_URL}/api/licenses/validate`,
    JSON.stringify({
      license_key: license.key,
      ip_address: license.ip,
      device_info: 'k6',
      nonce: `${__VU}-${__ITER}`,
    }),
    { headers: { 'Content-Type': 'application/json', 'X-Forwarded-For': license.ip } },
  );
  check(response, {
    'answered VALID': (r) => r.status === 200 && r.json('data.code') === 'VALID',
  });
}
