//! A second opinion on the saturation figures: the same validations with wrk (Debian's package;
//! `bench/run.sh` installs it when it can). wrk is closed loop and reports p50/p75/p90/p99 of
//! service time; a Lua script rotates over the seeded licenses like the main generator does.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

const SCRIPT: &str = r#"-- Written by celaest-bench: POSTs validations of the licenses in the keys file given after
-- `--`, each from its own bound IP (X-Forwarded-For), starting at a random line per thread.
local requests = {}
local count = 0
local next_index = 0

function init(args)
  local header = true
  for line in io.lines(args[1]) do
    if header then
      header = false
    else
      local key, ip = line:match("^([^,]+),([^,]+),")
      count = count + 1
      requests[count] = wrk.format("POST", "/api/licenses/validate",
        { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip },
        '{"license_key":"' .. key .. '","ip_address":"' .. ip ..
        '","device_info":"celaest-bench","nonce":"bench"}')
    end
  end
  next_index = math.random(count)
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
"#;

/// What wrk measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
}

/// `wrk` on the `PATH`, if any.
pub fn find() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wrk"))
            .find(|candidate| candidate.is_file())
    })
}

/// Runs wrk with two threads against `addr` for `duration`.
pub async fn run(
    wrk: &Path,
    work_dir: &Path,
    keys: &Path,
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let script = work_dir.join("wrk-validate.lua");
    std::fs::write(&script, SCRIPT)?;
    let mut command = std::process::Command::new(wrk);
    command.args([
        "-t2".to_owned(),
        format!("-c{connections}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--latency".to_owned(),
        "-s".to_owned(),
        script.display().to_string(),
        format!("http://{addr}"),
        "--".to_owned(),
        keys.display().to_string(),
    ]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .context("wrk task")??;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    parse(&text)
}

fn parse(text: &str) -> anyhow::Result<WrkResult> {
    let throughput = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .context("no Requests/sec in wrk's output")?
        .trim()
        .parse()?;
    let percentile = |p: &str| -> anyhow::Result<f64> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.split_whitespace().next() == Some(p))
            .with_context(|| format!("no {p} line in wrk's output"))?;
        duration_ms(
            line.split_whitespace()
                .nth(1)
                .context("empty percentile line")?,
        )
    };
    let non_2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map_or(Ok(0), |v| v.trim().parse())?;
    Ok(WrkResult {
        throughput,
        p50_ms: percentile("50%")?,
        p90_ms: percentile("90%")?,
        p99_ms: percentile("99%")?,
        non_2xx,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`, `1.50m`.
fn duration_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .context("duration without a unit")?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse()?;
    Ok(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        other => bail!("unknown wrk unit {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_summary() {
        let out = "Running 10s test @ http://127.0.0.1:9090
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.11us  301.22us  12.01ms   90.00%
  Latency Distribution
     50%  450.00us
     75%  600.00us
     90%    1.02ms
     99%    2.50ms
  612345 requests in 10.00s, 300.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  61234.50
Transfer/sec:     30.00MB
";
        let r = parse(out).unwrap();
        assert_eq!(r.throughput, 61234.5);
        assert_eq!((r.p50_ms, r.p90_ms, r.p99_ms), (0.45, 1.02, 2.5));
        assert_eq!(r.non_2xx, 3);
    }
}
