fn main() -> std::process::ExitCode {
    background_tasks::run(std::env::args_os())
}
