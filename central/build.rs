//! Rebuild when a migration changes: `sqlx::migrate!` embeds the folder but does not track it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
