//! `rootfs-build ROOT REFERENCE`: builds the ext4 image of a stored image
//! with `rootfs::build` and prints its path. The unprivileged-build test
//! runs it as another user.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, reference] = args.as_slice() else {
        eprintln!("usage: rootfs-build ROOT REFERENCE");
        return ExitCode::from(2);
    };
    match build(root, reference) {
        Ok(path) => {
            println!("{path}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rootfs-build: {err}");
            let mut source = std::error::Error::source(&*err);
            while let Some(cause) = source {
                eprintln!("caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn build(root: &str, reference: &str) -> Result<String, Box<dyn std::error::Error>> {
    let reference: ociref::Reference = reference.parse()?;
    let store = ocistore::Store::open(root)?;
    let built = rootfs::build(&store, &reference, None, &rootfs::BuildOptions::default())?;
    Ok(built.path.display().to_string())
}
