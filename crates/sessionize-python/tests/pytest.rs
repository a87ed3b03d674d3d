//! Runs the Python package's pytest tests (`python/tests/`) from `cargo test`, so the README's one
//! test command covers Python too.
//!
//! The native module is the one this `cargo test` just built (`deps/lib_sessionize.so` in the
//! target folder, a debug build): it is copied beside the package's Python files into a temporary folder
//! on `PYTHONPATH`, so no second build of DataFusion runs. pytest and the libraries the tests bring
//! data from (`requirements-test.txt`) are installed from PyPI into
//! `~/.cache/sessionize/venv-python` the first time, and again when that file changes. The tests
//! compare with the command line's output, so they use the `sessionize` binary of the same target
//! folder (`cargo test --workspace` builds it).
//!
//! `SESSIONIZE_PYTHON` names the Python interpreter to build the environment with (default
//! `python3`, 3.10 or newer).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target profile folder of this test binary (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/pytest-HASH
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lies in target/PROFILE/deps")
        .to_path_buf()
}

/// The private virtual environment with `requirements-test.txt` installed.
fn environment(manifest: &Path) -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let venv = PathBuf::from(home).join(".cache/sessionize/venv-python");
    let requirements = manifest.join("requirements-test.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("requirements-test.txt");
    let stamp = venv.join("sessionize-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return venv;
    }
    let python = std::env::var("SESSIONIZE_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python} to create {}: {e}", venv.display()));
    assert!(
        status.success(),
        "{python} -m venv {} failed",
        venv.display()
    );
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .expect("pip runs");
    assert!(
        status.success(),
        "pip install -r {} failed",
        requirements.display()
    );
    std::fs::write(&stamp, wanted).expect("the environment's stamp is written");
    venv
}

#[test]
fn pytest() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile = profile_dir();
    // `cargo test` builds the library for this test, the cdylib beside the rlib in `deps/` (it
    // copies it up to the profile folder only when the library itself is built).
    let module = [
        profile.join("deps/lib_sessionize.so"),
        profile.join("lib_sessionize.so"),
    ]
    .into_iter()
    .find(|m| m.exists())
    .expect("lib_sessionize.so: cargo test builds it with the sessionize-python package");
    let venv = environment(&manifest);
    let site = tempfile::tempdir().expect("a temporary folder");
    let package = site.path().join("sessionize");
    std::fs::create_dir_all(&package).expect("a package folder");
    for entry in std::fs::read_dir(manifest.join("python/sessionize")).expect("python/sessionize") {
        let path = entry.expect("a directory entry").path();
        if path.is_file() {
            std::fs::copy(&path, package.join(path.file_name().expect("a file name")))
                .expect("the package's files are copied");
        }
    }
    std::fs::copy(&module, package.join("_sessionize.abi3.so")).expect("the module is copied");
    let workspace = manifest
        .join("../..")
        .canonicalize()
        .expect("the workspace");
    let status = Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(manifest.join("python/tests"))
        .env("PYTHONPATH", site.path())
        .env("SESSIONIZE_BIN", profile.join("sessionize"))
        .env("SESSIONIZE_WORKSPACE", &workspace)
        .status()
        .expect("pytest runs");
    assert!(
        status.success(),
        "the Python tests failed (see pytest's output above)"
    );
}
