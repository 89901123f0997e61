//! `kubectl zooherd`: the kubectl plugin (see `zooherd::plugin`). kubectl finds it on the PATH
//! by its name, `kubectl-zooherd`.

fn main() -> std::process::ExitCode {
    zooherd::plugin::main()
}
