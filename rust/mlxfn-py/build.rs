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
//!
//! The second product is the C++ runtime for C++ programs (`native/`),
//! also linked to the wheel's libmlx, placed where the wheel takes it:
//! `lib/libmlxfn.so` (`native/src/*.cpp` and the core's C ABI, the staticlib
//! of `rust/mlxfn-capi`, built by a nested cargo), `include/mlxfn/*.h` and
//! `share/cmake/mlxfn/` (`find_package(mlxfn CONFIG)`, from `native/cmake`),
//! all under `python/mlxfn/`.  `MLXFN_NO_BRIDGE=1` skips it too.

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
    for dir in ["../../native", "../mlxfn-capi", "../mlxfn-core/src", "../../Cargo.lock"] {
        println!("cargo:rerun-if-changed={dir}");
    }
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
        for dir in ["lib", "include", "share"] {
            let _ = fs::remove_dir_all(package.join(dir));
        }
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
    // The runtime first: the bridge links to it.
    let mlx_include = PathBuf::from(get("mlx_include"));
    build_runtime(&root, &package, &mlx_include, Path::new(&get("mlx_lib")), &out);

    // The bridge itself, with warnings as errors: the lint gate of bridge/.
    let bridge_source = root.join("bridge/mlxfn_bridge.cpp");
    let bridge = compiler(&includes, &out.join("bridge"))
        .file(&bridge_source)
        .file(root.join("bridge/probe.cpp"))
        .include(root.join("native/include"))
        .include(root.join("native/src")) // the runtime's mapping (constants.h), exported by libmlxfn.so
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
        // The runtime (NativeFunction) is the wheel's libmlxfn.so, not a second
        // copy compiled in: one runtime per process, shared with C++ users.
        .arg(format!("-L{}", package.join("lib").display()))
        .arg("-lmlxfn")
        .arg("-Wl,-rpath,$ORIGIN/lib")
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

/// `libmlxfn.so`, its headers and its CMake package, under `package`.
fn build_runtime(root: &Path, package: &Path, mlx_include: &Path, mlx_lib: &Path, out: &Path) {
    let capi = build_capi(root);
    let native = root.join("native");
    let sources = cpp_files(&native.join("src"));
    // The runtime, with warnings as errors: the lint gate of native/src.
    let mut runtime = compiler(&[mlx_include.to_path_buf()], &out.join("runtime"));
    runtime
        .include(native.join("include"))
        .include(native.join("src"))
        .files(&sources)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .flag("-fvisibility=default"); // what leaves the library is the version script's choice
    let objects = if sources.is_empty() { Vec::new() } else { runtime.compile_intermediates() };

    // Export the C++ API (namespace mlxfn), every function of the core's C
    // ABI (listed from its generated header, each pulled out of the archive)
    // and of the C calling API (mlxfn_c.h, implemented in native/src).
    let mut c_functions = Vec::new();
    for name in ["mlxfn_core.h", "mlxfn_c.h"] {
        let header = fs::read_to_string(native.join("include/mlxfn").join(name)).unwrap();
        c_functions.extend(c_abi_functions(&header));
    }
    c_functions.sort();
    c_functions.dedup();
    let script = out.join("libmlxfn.map");
    let globals: String = c_functions.iter().map(|f| format!("    {f};\n")).collect();
    fs::write(
        &script,
        format!(
            "{{\n  global:\n{globals}    extern \"C++\" {{\n      mlxfn::*;\n      \"typeinfo for mlxfn::*\";\n      \
             \"typeinfo name for mlxfn::*\";\n      \"vtable for mlxfn::*\";\n    }};\n  local: *;\n}};\n"
        ),
    )
    .unwrap();

    let lib_dir = package.join("lib");
    fs::create_dir_all(&lib_dir).unwrap();
    let target = lib_dir.join("libmlxfn.so");
    let partial = target.with_extension("so.partial");
    let mut link = runtime.get_compiler().to_command();
    link.arg("-shared").args(&objects).arg("-o").arg(&partial);
    for f in &c_functions {
        link.arg(format!("-Wl,--undefined={f}"));
    }
    link.arg(&capi)
        .arg(format!("-L{}", mlx_lib.display()))
        .arg("-lmlx")
        // The Rust standard library's system libraries (`--print native-static-libs`).
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"])
        .arg("-Wl,-soname,libmlxfn.so")
        // site-packages/mlxfn/lib -> site-packages/mlx/lib, where the mlx wheel puts libmlx.so.
        .arg("-Wl,-rpath,$ORIGIN/../../mlx/lib")
        .arg(format!("-Wl,--version-script={}", script.display()))
        .arg("-Wl,--gc-sections")
        .arg("-Wl,--strip-debug") // the Rust standard library's debug info: 4 MB
        .arg("-Wl,--as-needed");
    run(&mut link, "linking libmlxfn.so");
    fs::rename(&partial, &target).unwrap();

    // The headers, as they are in the checkout.
    let include_dir = package.join("include/mlxfn");
    let _ = fs::remove_dir_all(&include_dir);
    fs::create_dir_all(&include_dir).unwrap();
    for entry in fs::read_dir(native.join("include/mlxfn")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "h") {
            fs::copy(entry.path(), include_dir.join(entry.file_name())).unwrap();
        }
    }

    // The CMake package: the templates with this version and the building mlx's CMake dir.
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    let mlx_cmake = mlx_include.parent().unwrap().join("share/cmake/MLX");
    let cmake_dir = package.join("share/cmake/mlxfn");
    fs::create_dir_all(&cmake_dir).unwrap();
    for name in ["mlxfnConfig.cmake", "mlxfnConfigVersion.cmake"] {
        let template = fs::read_to_string(native.join("cmake").join(format!("{name}.in"))).unwrap();
        let text = template
            .replace("@VERSION@", &version)
            .replace("@VERSION_MAJOR@", version.split('.').next().unwrap())
            .replace("@MLX_CMAKE_DIR@", &mlx_cmake.display().to_string());
        fs::write(cmake_dir.join(name), text).unwrap();
    }
}

/// The `.cpp` files of `dir`, sorted (none for a missing directory).
fn cpp_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    files.sort();
    files
}

/// The names of the functions the C ABI header declares (`mlxfn_...(`).
fn c_abi_functions(header: &str) -> Vec<String> {
    let mut names: Vec<String> = header
        .match_indices("mlxfn_")
        .filter(|&(at, _)| at == 0 || !header[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        .filter_map(|(at, _)| {
            let rest = &header[at..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            rest[end..].starts_with('(').then(|| rest[..end].to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Build the C ABI's staticlib (`rust/mlxfn-capi`) with a cargo of its own:
/// its own target directory (the outer build holds a lock on ours), the
/// lockfile as it is, nothing downloaded (every crate it needs, the outer
/// build needed first), and no fat LTO (the workspace's release profile
/// has it for the Python module; here it would only slow the build).
fn build_capi(root: &Path) -> PathBuf {
    let target_dir = root.join("target/capi");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "--release", "--locked", "--offline", "-p", "mlxfn-capi"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings for its own crates are not this build's;
    // where crates come from (home, registries, network) is.
    const KEEP: [&str; 5] = ["CARGO_HOME", "CARGO_NET_", "CARGO_REGISTR", "CARGO_SOURCE_", "CARGO_HTTP_"];
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let cargo_setting = key.starts_with("CARGO_") && !KEEP.iter().any(|k| key.starts_with(k));
        if cargo_setting || key == "RUSTFLAGS" || key == "RUSTC_WORKSPACE_WRAPPER" {
            command.env_remove(key.as_ref());
        }
    }
    command.env("CARGO_PROFILE_RELEASE_LTO", "false").env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    run(&mut command, "building the C ABI (cargo build -p mlxfn-capi)");
    target_dir.join("release/libmlxfn_capi.a")
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
