//! `hospital-ml`: the ML sidecar process.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    hospital_ml::run()
}
