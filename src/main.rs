fn main() {
    std::process::exit(pidbeat::main());
}
