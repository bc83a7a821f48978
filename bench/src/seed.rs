//! Many licenses, fast: a product and N licenses written straight into PostgreSQL with `COPY`,
//! each optionally with one bound IP address, so that validations from that address take the
//! already-bound path (no bind, no write) at central and at the edges.
//!
//! Keys are made exactly as central makes them ([`LicenseKey::generate`] under the checksum
//! secret) and stored with their SHA-256 ([`LicenseKey::hash`]). Nothing is written to the
//! replication outbox: an edge that connects afterwards takes a snapshot, which reads the tables.
//! (Edges already connected would not see these rows; seed before starting them.)
//!
//! The SQL is checked at run time (`sqlx::query`), not by the `query!` macros: the bench is not
//! part of the workspace's offline query cache, and these statements are plain inserts.

use std::{
    collections::HashSet,
    io::Write,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use celaest_protocol::{ChecksumKey, KeyHash, LicenseKey, ProductCode};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// Central's development checksum secret (`central/src/config.rs`, `dev::LICENSE_CHECKSUM_SECRET`):
/// the bench runs central and edges with their development defaults.
pub const DEV_CHECKSUM_SECRET: &str = "dev-only-license-checksum-secret-not-for-production";

/// Rows per `COPY` message.
const COPY_BATCH: usize = 10_000;

/// A seeded license: what a client would present, and where from.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub id: Uuid,
    pub key: String,
    pub hash: KeyHash,
    pub ip: Ipv4Addr,
}

/// What to seed.
#[derive(Debug, Clone)]
pub struct Spec {
    /// A product code not used yet in the database (2–10 of `[A-Z0-9]`).
    pub product_code: String,
    pub count: usize,
    /// Bind one IP address per license (its client address in the load).
    pub bind_ips: bool,
    /// Licenses get consecutive addresses from `10.0.0.1 + ip_offset`: give a second batch in the
    /// same database an offset past the first so that no two licenses share an address.
    pub ip_offset: u32,
}

/// How seeding went.
#[derive(Debug, Clone)]
pub struct Summary {
    pub product_id: Uuid,
    pub licenses: Vec<Seeded>,
    pub took: Duration,
}

/// Seeds `spec` into the database at `database_url` (already migrated).
pub async fn seed(database_url: &str, spec: &Spec) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let code = ProductCode::parse(&spec.product_code)
        .map_err(|e| anyhow::anyhow!("product code {:?}: {e}", spec.product_code))?;
    let secret = ChecksumKey::new(DEV_CHECKSUM_SECRET.as_bytes())
        .map_err(|e| anyhow::anyhow!("checksum secret: {e}"))?;
    let licenses = generate(&code, &secret, spec)?;

    let mut conn = PgConnection::connect(database_url)
        .await
        .context("connect to PostgreSQL")?;
    let mut tx = conn.begin().await?;
    let product_id = Uuid::now_v7();
    let slug = format!("bench-{}", code.as_str().to_ascii_lowercase());
    sqlx::query(
        "INSERT INTO products (id, code, name, slug, product_type, status, published_at)
         VALUES ($1, $2, $3, $4, 'software', 'published', now())",
    )
    .bind(product_id)
    .bind(code.as_str())
    .bind(format!("Bench {}", code.as_str()))
    .bind(&slug)
    .execute(&mut *tx)
    .await
    .context("insert the bench product")?;

    // Distinct creation times, one second apart up to now (as licenses sold over time would
    // have): lists sort by `created_at`, and a million equal values would make every page sort
    // the whole table, which no real catalogue does.
    let now = chrono::Utc::now();
    let count = i64::try_from(licenses.len())?;
    copy_rows(
        &mut tx,
        "COPY licenses (id, license_key, key_hash, product_id, status, max_ips, activated_at, created_at) FROM STDIN",
        licenses.iter().zip(0..).map(|(l, i)| {
            let created = (now - chrono::TimeDelta::seconds(count - i)).to_rfc3339();
            // In COPY's text format a backslash escapes, so bytea's `\x` prefix is written `\\x`.
            format!(
                "{}\t{}\t\\\\x{}\t{product_id}\tactive\t5\t{created}\t{created}\n",
                l.id, l.key, l.hash
            )
        }),
    )
    .await
    .context("copy licenses")?;
    if spec.bind_ips {
        copy_rows(
            &mut tx,
            "COPY license_ip_bindings (license_id, ip_address, source) FROM STDIN",
            licenses
                .iter()
                .map(|l| format!("{}\t{}\tauto\n", l.id, l.ip)),
        )
        .await
        .context("copy IP bindings")?;
    }
    tx.commit().await?;
    // Fresh statistics, so the planner uses the key-hash index at once.
    sqlx::query("ANALYZE licenses").execute(&mut conn).await?;
    sqlx::query("ANALYZE license_ip_bindings")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(Summary {
        product_id,
        licenses,
        took: started.elapsed(),
    })
}

/// `count` distinct keys of `code`, with their ids and client addresses.
fn generate(code: &ProductCode, secret: &ChecksumKey, spec: &Spec) -> anyhow::Result<Vec<Seeded>> {
    let rng = ring::rand::SystemRandom::new();
    let mut seen = HashSet::with_capacity(spec.count);
    let mut licenses = Vec::with_capacity(spec.count);
    let first_ip = u32::from(Ipv4Addr::new(10, 0, 0, 1)) + spec.ip_offset;
    // Thirty-two random bits per product: at a million keys a few hundred coincide, and the
    // database's unique constraint would refuse them. Draw again instead.
    while licenses.len() < spec.count {
        let key = LicenseKey::generate(code, secret, &rng)
            .map_err(|_| anyhow::anyhow!("no randomness for a license key"))?;
        if !seen.insert(key.as_str().to_owned()) {
            continue;
        }
        let n = u32::try_from(licenses.len())?;
        let ip = Ipv4Addr::from(
            first_ip
                .checked_add(n)
                .context("more licenses than addresses in 10.0.0.0/8")?,
        );
        anyhow::ensure!(ip.octets()[0] == 10, "ran out of 10.0.0.0/8 addresses");
        licenses.push(Seeded {
            id: Uuid::now_v7(),
            key: key.as_str().to_owned(),
            hash: key.hash(),
            ip,
        });
    }
    Ok(licenses)
}

async fn copy_rows(
    conn: &mut PgConnection,
    statement: &str,
    rows: impl Iterator<Item = String>,
) -> anyhow::Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut buffer = String::new();
    let mut in_buffer = 0;
    for row in rows {
        buffer.push_str(&row);
        in_buffer += 1;
        if in_buffer == COPY_BATCH {
            copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
            in_buffer = 0;
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.into_bytes()).await?;
    }
    Ok(copy.finish().await?)
}

/// The header of the keys file, then one `license_key,ip_address,license_id` line per license.
const KEYS_HEADER: &str = "license_key,ip_address,license_id";

/// Writes `license_key,ip_address,license_id` lines (with that header) for load tools (k6 reads
/// the same file).
pub fn write_keys(path: &Path, licenses: &[Seeded]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "{KEYS_HEADER}")?;
    for l in licenses {
        writeln!(out, "{},{},{}", l.key, l.ip, l.id)?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a file [`write_keys`] wrote: each license's key and bound client address, in order.
pub fn read_keys(path: &Path) -> anyhow::Result<Vec<(String, Ipv4Addr)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    anyhow::ensure!(
        lines.next().map(|(_, header)| header) == Some(KEYS_HEADER),
        "{}: not a keys file (its first line is not {KEYS_HEADER})",
        path.display()
    );
    lines
        .filter(|(_, line)| !line.is_empty())
        .map(|(n, line)| {
            let mut fields = line.split(',');
            let (Some(key), Some(ip)) = (fields.next(), fields.next()) else {
                anyhow::bail!("{}:{}: expected {KEYS_HEADER}", path.display(), n + 1);
            };
            let ip = ip
                .parse()
                .with_context(|| format!("{}:{}: address {ip:?}", path.display(), n + 1))?;
            Ok((key.to_owned(), ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_licenses_are_distinct_valid_keys_with_distinct_addresses() {
        let spec = Spec {
            product_code: "BENCH".into(),
            count: 2_000,
            bind_ips: true,
            ip_offset: 300,
        };
        let secret = ChecksumKey::new(DEV_CHECKSUM_SECRET.as_bytes()).unwrap();
        let code = ProductCode::parse("BENCH").unwrap();
        let licenses = generate(&code, &secret, &spec).unwrap();
        assert_eq!(licenses.len(), 2_000);
        assert_eq!(licenses[0].ip, Ipv4Addr::new(10, 0, 1, 45));
        let keys: HashSet<_> = licenses.iter().map(|l| l.key.as_str()).collect();
        let ips: HashSet<_> = licenses.iter().map(|l| l.ip).collect();
        assert_eq!((keys.len(), ips.len()), (2_000, 2_000));
        for l in &licenses {
            assert!(LicenseKey::parse(&l.key, &secret).is_ok(), "{}", l.key);
        }
    }

    #[test]
    fn the_keys_file_reads_back_what_was_written() {
        let secret = ChecksumKey::new(DEV_CHECKSUM_SECRET.as_bytes()).unwrap();
        let code = ProductCode::parse("BENCH").unwrap();
        let spec = Spec {
            product_code: "BENCH".into(),
            count: 3,
            bind_ips: true,
            ip_offset: 0,
        };
        let licenses = generate(&code, &secret, &spec).unwrap();
        let path = std::env::temp_dir().join(format!("celaest-keys-{}.csv", std::process::id()));
        write_keys(&path, &licenses).unwrap();
        let read = read_keys(&path);
        std::fs::write(&path, "key,ip\nA,10.0.0.1\n").unwrap();
        let foreign = read_keys(&path);
        std::fs::remove_file(&path).unwrap();
        let expected: Vec<(String, Ipv4Addr)> =
            licenses.iter().map(|l| (l.key.clone(), l.ip)).collect();
        assert_eq!(read.unwrap(), expected);
        assert!(foreign.is_err(), "another CSV is refused");
    }
}
