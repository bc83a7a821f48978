//! The command line: every subcommand documents itself.

use std::process::Command;

fn central(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_celaest-central"))
        .args(args)
        .output()
        .expect("run celaest-central")
}

#[test]
fn every_subcommand_has_help() {
    let top = central(&["--help"]);
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout);
    for sub in ["serve", "worker", "migrate", "seed"] {
        assert!(text.contains(sub), "{sub} not listed in:\n{text}");
        let help = central(&[sub, "--help"]);
        assert!(help.status.success(), "{sub} --help failed");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Usage: celaest-central"),
            "{sub}"
        );
    }
    assert!(
        String::from_utf8_lossy(&central(&["serve", "--help"]).stdout).contains("--with-workers")
    );
}

#[test]
fn an_unknown_subcommand_fails_with_usage() {
    let output = central(&["frobnicate"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));
}

#[test]
fn production_without_its_secrets_refuses_to_start_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_celaest-central"))
        .arg("migrate")
        .env_clear()
        .env("APP_ENV", "production")
        .env("DATABASE_URL", "postgres://u:p@127.0.0.1:1/x")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SUPABASE_URL"), "{stderr}");
    assert!(!stderr.contains("u:p@"), "credentials leaked: {stderr}");
}
