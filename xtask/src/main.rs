//! Development tasks: `cargo xtask <task>`. Empty for now; schemas and benchmarks land here.

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        None | Some("help" | "--help") => {
            println!("cargo xtask <task>\n\nNo tasks yet.");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown task {other:?}; run `cargo xtask help`"),
    }
}
