//! Builds `mlxfn._bridge`, the C++ half of the Python package (`bridge/`),
//! when the `bridge` feature is on (maturin turns it on: `pyproject.toml`).
//!
//! The bridge is a Python extension of its own: nanobind code in MLX's
//! nanobind domain, compiled against the mlx wheel's `include/` and linked to
//! its `lib/libmlx.so`, so that the arrays it returns are ordinary `mx.array`s.
//! Both come from the Python that builds (`PYO3_PYTHON`, which maturin sets):
//! in a `pip wheel .` that is the isolated build environment, holding the
//! mlx and nanobind pinned in `pyproject.toml`'s `build-system.requires`.
//! The module lands beside the package's Python sources, where
//! `[tool.maturin] include` takes it into the wheel and `maturin develop`
//! finds it.  It is tied to that Python minor version and that mlx release
//! (it checks the latter itself at run time).
//!
//! Linux only: on macOS MLX adopts page-aligned memory itself.  A build
//! that cannot make the bridge fails, saying why, unless `MLXFN_NO_BRIDGE=1`
//! asks for a wheel without it (whose imports then copy, and say so).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the build needs to know of the building Python, one `key=value` a line.
const QUERY: &str = r#"
import sysconfig, mlx, nanobind
from pathlib import Path
mlx_dir = Path(list(mlx.__path__)[0])
print("python_include=" + sysconfig.get_paths()["include"])
print("ext_suffix=" + sysconfig.get_config_var("EXT_SUFFIX"))
print("mlx_include=" + str(mlx_dir / "include"))
print("mlx_lib=" + str(mlx_dir / "lib"))
print("nanobind_version=" + nanobind.__version__)
print("nanobind_include=" + nanobind.include_dir())
print("nanobind_source=" + nanobind.source_dir())
"#;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../bridge");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=MLXFN_NO_BRIDGE");
    println!("cargo:rerun-if-env-changed=CXX");
    if env::var_os("CARGO_FEATURE_BRIDGE").is_none() {
        return;
    }
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let package = root.join("python/mlxfn");
    if env::var("CARGO_CFG_TARGET_OS").unwrap() != "linux" {
        return; // unified memory: MLX adopts the mapped pages itself
    }
    if env::var("MLXFN_NO_BRIDGE").is_ok_and(|v| v == "1") {
        println!("cargo:warning=MLXFN_NO_BRIDGE=1: building without the C++ bridge (imports will copy)");
        remove_stale(&package, "");
        return;
    }
    let python = env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let paths = query(&python);
    let get = |key: &str| paths.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap();
    let nb_version = get("nanobind_version");
    if !nb_version.starts_with("3.") {
        fail(&format!("nanobind {nb_version} found; mlx 0.32's mlx.core is built with nanobind 3.x"));
    }
    let nb_source = PathBuf::from(get("nanobind_source"));
    let includes = [
        PathBuf::from(get("python_include")),
        PathBuf::from(get("nanobind_include")),
        nb_source.join("../ext/robin_map/include"),
        PathBuf::from(get("mlx_include")),
    ];
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    // nanobind's own sources: compiled once per nanobind version and Python.
    let nb_dir = out.join(format!("nanobind-{nb_version}"));
    let nb_object = nb_dir.join("nb_combined.o");
    if !nb_object.exists() {
        let objects = compiler(&includes, &nb_dir).file(nb_source.join("nb_combined.cpp")).compile_intermediates();
        fs::rename(&objects[0], &nb_object).unwrap();
    }
    // The bridge itself, with warnings as errors: the lint gate of bridge/.
    let bridge_source = root.join("bridge/mlxfn_bridge.cpp");
    let bridge = compiler(&includes, &out.join("bridge"))
        .file(&bridge_source)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .to_owned();
    let mut objects = bridge.compile_intermediates();
    objects.push(nb_object);

    let target = package.join(format!("_bridge{}", get("ext_suffix")));
    let partial = target.with_extension("so.partial");
    let mut link = bridge.get_compiler().to_command();
    link.arg("-shared")
        .args(&objects)
        .arg("-o")
        .arg(&partial)
        .arg(format!("-L{}", get("mlx_lib")))
        .arg("-lmlx")
        // libmlx.so where a wheel install puts it (site-packages/mlx/lib); in a
        // checkout it is found already loaded by `import mlx.core`.
        .arg("-Wl,-rpath,$ORIGIN/../mlx/lib")
        .arg("-Wl,--as-needed");
    run(&mut link, "linking the bridge");
    remove_stale(&package, &get("ext_suffix"));
    fs::rename(&partial, &target).unwrap(); // an importer never sees a half-written module
}

/// A C++20 compiler set up as MLX's extensions are (`NB_DOMAIN=mlx`).
fn compiler(includes: &[PathBuf], out_dir: &Path) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .opt_level(2)
        .pic(true)
        .define("NB_DOMAIN", "mlx")
        .define("NDEBUG", None)
        .flag("-fvisibility=hidden")
        .warnings(false)
        .cargo_metadata(false)
        .out_dir(out_dir);
    for dir in includes {
        // System headers to the compiler: their warnings are not the bridge's.
        build.flag("-isystem").flag(dir);
    }
    build
}

/// The building Python's answers to `QUERY`; a clear failure without mlx or nanobind.
fn query(python: &str) -> Vec<(String, String)> {
    let output = Command::new(python).arg("-c").arg(QUERY).output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => fail(&format!(
            "{python} cannot tell where mlx and nanobind are (both are build requirements):\n{}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(err) => fail(&format!("cannot run {python}: {err}")),
    };
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// Bridge modules of other Pythons left in the package directory by earlier builds.
fn remove_stale(package: &Path, keep_suffix: &str) {
    let keep = format!("_bridge{keep_suffix}");
    for entry in fs::read_dir(package).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("_bridge.") && name.ends_with(".so") && name != keep {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn run(command: &mut Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("{what} failed ({status}): {command:?}")),
        Err(err) => fail(&format!("{what}: cannot run {command:?}: {err}")),
    }
}

fn fail(why: &str) -> ! {
    panic!("mlxfn's C++ bridge cannot be built: {why}\n(set MLXFN_NO_BRIDGE=1 to build a wheel without it: its imports copy)");
}
