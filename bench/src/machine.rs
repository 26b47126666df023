// SPDX-License-Identifier: MIT OR Apache-2.0
//! `bench-machine`: prints the machine line every bench starts with (CPU model, cores,
//! instruction sets), for benches written as scripts (`scripts/bench failover`).

mod harness;

fn main() {
    println!("{}", harness::machine_line());
}
