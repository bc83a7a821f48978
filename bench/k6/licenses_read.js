// k6: the authenticated read `GET /api/licenses?page=1&per_page=20` at central, at a fixed rate.
//
//   TOKEN=$(target/bench/release/celaest-bench token) \
//     k6 run -e TOKEN="$TOKEN" -e RATE=200 -e P95_MS=100 bench/k6/licenses_read.js
//
// TOKEN: an admin access token (`celaest-bench token` signs one with central's development
// secret; with a real Supabase project, use a real one). BASE_URL: central (default
// http://127.0.0.1:8080). RATE (default 200 req/s, open loop), DURATION (default 30s), P95_MS.
// Central limits each user to RATE_LIMIT_PER_MIN requests a minute (100 by default): run it with
// a higher limit for this test, as `make bench` does.
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const RATE = Number(__ENV.RATE || 200);
const DURATION = __ENV.DURATION || '30s';
const TOKEN = __ENV.TOKEN || '';

const thresholds = { checks: ['rate>0.99'] };
if (__ENV.P95_MS) thresholds.http_req_duration = [`p(95)<${Number(__ENV.P95_MS)}`];

export const options = {
  scenarios: {
    fixed_rate: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 32,
      maxVUs: 256,
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
  thresholds,
};

export function setup() {
  if (!TOKEN) throw new Error('set TOKEN (celaest-bench token prints an admin token)');
}

export default function () {
  const response = http.get(`${BASE_URL}/api/licenses?page=1&per_page=20`, {
    headers: { Authorization: `Bearer ${TOKEN}` },
  });
  check(response, {
    'a page of licenses': (r) => r.status === 200 && r.json('success') === true,
  });
}
