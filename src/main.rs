fn main() -> std::process::ExitCode {
    audit_trail::main()
}
