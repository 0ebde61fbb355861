// SPDX-License-Identifier: GPL-2.0

//! Generates the tools' uAPI definitions with bindgen from the UAPI headers
//! of the kernel rmdev is built against (`make headers` in the cached tree,
//! which `scripts/setup.sh` runs), so that every number and layout the tools
//! use is the kernel's own and none is written out by hand or taken from the
//! driver under test.
//!
//! The kernel tree is the one named in `$RMDEV_CACHE/kernel/current`, with
//! `RMDEV_CACHE` defaulting to `$XDG_CACHE_HOME/rmdev` or `~/.cache/rmdev`
//! as in `scripts/lib.sh`.

use std::collections::BTreeSet;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::{Arc, Mutex};

use bindgen::callbacks::{DeriveInfo, IntKind, ParseCallbacks, TypeKind};

/// The headers the tools use, under the installed `include` directory.
const HEADERS: [&str; 3] = ["linux/vfio.h", "linux/iommufd.h", "linux/pci_regs.h"];

/// Where Debian's `libclang-19-dev` (installed by `scripts/setup.sh`) puts
/// libclang; used when `LIBCLANG_PATH` is not set.
const LIBCLANG_DIR: &str = "/usr/lib/llvm-19/lib";

fn fail(msg: &str) -> ! {
    eprintln!("error: vfio-uapi: {msg}");
    process::exit(1);
}

/// A non-empty environment variable, as the shell's `${VAR:-...}` sees it.
fn var(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var(name).ok().filter(|v| !v.is_empty())
}

/// The cache directory, found as `scripts/lib.sh` finds it.
fn cache_dir() -> PathBuf {
    if let Some(c) = var("RMDEV_CACHE") {
        return c.into();
    }
    if let Some(x) = var("XDG_CACHE_HOME") {
        return Path::new(&x).join("rmdev");
    }
    match var("HOME") {
        Some(h) => Path::new(&h).join(".cache/rmdev"),
        None => fail("neither RMDEV_CACHE, XDG_CACHE_HOME nor HOME is set"),
    }
}

/// The installed UAPI headers of the cached kernel tree.
fn include_dir() -> PathBuf {
    let current = cache_dir().join("kernel/current");
    println!("cargo:rerun-if-changed={}", current.display());
    let Ok(kdir) = fs::read_to_string(&current) else {
        fail(&format!(
            "no kernel built yet ({} is missing): run `make setup` \
             (scripts/setup.sh), which fetches and builds the kernel and \
             installs its UAPI headers",
            current.display()
        ));
    };
    let inc = Path::new(kdir.trim()).join("usr/include");
    for h in HEADERS {
        let p = inc.join(h);
        if !p.is_file() {
            fail(&format!(
                "the kernel's UAPI headers are not installed ({} is missing): \
                 run `make setup` (scripts/setup.sh), which runs `make headers` \
                 in the kernel tree",
                p.display()
            ));
        }
        println!("cargo:rerun-if-changed={}", p.display());
    }
    inc
}

/// Names the ioctl request macros (`_IO(...)` and its kin) so that they get
/// the type `ioctl(2)` takes, and collects every generated struct and union
/// for the `Plain` marker.
#[derive(Debug, Default)]
struct Callbacks {
    ioctls: Mutex<BTreeSet<String>>,
    plain: Arc<Mutex<BTreeSet<String>>>,
}

impl ParseCallbacks for Callbacks {
    fn modify_macro(&self, name: &str, tokens: &mut Vec<bindgen::callbacks::Token>) {
        // The first token is the macro's name, the second the start of its
        // body.
        let is_ioctl = tokens
            .get(1)
            .is_some_and(|t| matches!(&t.raw[..], b"_IO" | b"_IOR" | b"_IOW" | b"_IOWR"));
        if is_ioctl {
            if let Ok(mut s) = self.ioctls.lock() {
                s.insert(name.to_owned());
            }
        }
    }

    fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
        let ioctl = self.ioctls.lock().is_ok_and(|s| s.contains(name));
        ioctl.then_some(IntKind::ULong)
    }

    fn add_derives(&self, info: &DeriveInfo<'_>) -> Vec<String> {
        if matches!(info.kind, TypeKind::Struct | TypeKind::Union) {
            if let Ok(mut s) = self.plain.lock() {
                s.insert(info.name.to_owned());
            }
        }
        Vec::new()
    }
}

fn main() {
    let inc = include_dir();
    if var("LIBCLANG_PATH").is_none() && Path::new(LIBCLANG_DIR).is_dir() {
        env::set_var("LIBCLANG_PATH", LIBCLANG_DIR);
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR is not set")));
    let wrapper = out.join("uapi.h");
    let text: String = HEADERS
        .iter()
        .map(|h| format!("#include <{h}>\n"))
        .collect();
    fs::write(&wrapper, text).unwrap_or_else(|e| fail(&format!("{}: {e}", wrapper.display())));

    let plain = Arc::new(Mutex::new(BTreeSet::new()));
    let callbacks = Callbacks {
        plain: Arc::clone(&plain),
        ..Callbacks::default()
    };
    let files = HEADERS.map(|h| regex_escape(&inc.join(h).display().to_string()));
    let bindings = bindgen::Builder::default()
        .header(wrapper.display().to_string())
        .clang_args(["-nostdinc", "-I", &inc.display().to_string()])
        .allowlist_file(files.join("|"))
        // Function-like macros (`_IO(VFIO_TYPE, VFIO_BASE + 7)`) are
        // evaluated by clang.
        .clang_macro_fallback()
        .clang_macro_fallback_build_dir(&out)
        .parse_callbacks(Box::new(callbacks))
        .prepend_enum_name(false)
        .derive_default(true)
        // Padding becomes fields of its own, so that a struct's bytes are
        // all initialised and can be handed to the kernel as they are.
        .explicit_padding(true)
        .layout_tests(false)
        .use_core()
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen over {}: {e}", inc.display())));
    bindings
        .write_to_file(out.join("uapi.rs"))
        .unwrap_or_else(|e| fail(&format!("writing the bindings: {e}")));

    let mut impls = String::new();
    for name in plain.lock().map(|s| s.clone()).unwrap_or_default() {
        let _ = writeln!(impls, "unsafe impl Plain for {name} {{}}");
    }
    fs::write(out.join("plain.rs"), impls)
        .unwrap_or_else(|e| fail(&format!("writing the Plain impls: {e}")));
}

/// `s` with the regular expression metacharacters escaped.
fn regex_escape(s: &str) -> String {
    let mut r = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            r.push('\\');
        }
        r.push(c);
    }
    r
}
