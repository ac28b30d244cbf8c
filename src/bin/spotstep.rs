//! The spotstep tool: the operator's commands against AWS (or `AWS_ENDPOINT_URL`) and the
//! developer's generators. `spotstep --help` lists the commands, `spotstep <command> --help`
//! says more; the commands are [`spotstep::cli::Command`], the exit codes
//! `spotstep::cli::exit`. Run `asl`, `asl-all` and `graph <job>` from the repository root.

use std::process::ExitCode;

use spotstep::cli::{self, exit};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stack = std::env::var("SPOTSTEP_STACK").ok();
    let command = match cli::parse(&args, stack.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // A closed stdout (`spotstep --help | head`) is not an error.
            let _ = e.print();
            return ExitCode::from(exit::of_usage(&e));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(command.execute()) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("spotstep: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
