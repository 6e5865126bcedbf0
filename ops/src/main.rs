//! The `robsond` binary (issue 5; not built yet).
//!
//! It will wire `engine`, `feed` and `persist` into the threads of DESIGN.md section 7 (pinned hot
//! loop, I/O thread, cold thread, tiny_http) and own everything an operator touches: configuration,
//! CLI, probes, metrics, the control API and `robsond demo`. It must not hold trading rules: those
//! live in `engine`, so that replay and tests see exactly what production decides.

fn main() {
    eprintln!("robsond: the daemon is not built yet (issue 5); see README.md");
    std::process::exit(2);
}
