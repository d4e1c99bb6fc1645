fn main() {
    std::process::exit(strand::cli::main());
}
