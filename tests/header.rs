//! The C header `include/jobrunner.h`: committed exactly as the build generates it (from
//! `src/ffi/` by build.rs with cbindgen), a doc comment on every declaration, version
//! macros that match the crate, and compiling warning-free as C99 and C++11 even when
//! included twice in one translation unit.
//!
//! The compile tests use `$CC` and `$CXX` (default `cc` and `c++`) and are skipped, with a
//! message, where the compiler is missing.

#![cfg(feature = "capi")]

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The header this build generated (build.rs writes it into `OUT_DIR`).
const GENERATED: &str = env!("JOBRUNNER_GENERATED_HEADER");

/// The header in the source tree, the one that is committed and installed.
fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("include")
        .join("jobrunner.h")
}

fn committed() -> String {
    let path = committed_path();
    fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read {} ({error}): run `cargo build` to generate it, then commit it",
            path.display()
        )
    })
}

#[test]
fn committed_header_is_the_generated_one() {
    let generated = fs::read_to_string(GENERATED)
        .unwrap_or_else(|error| panic!("cannot read the generated header {GENERATED}: {error}"));
    // Not assert_eq!: a whole header on each side would bury the message.
    assert!(
        committed() == generated,
        "{} differs from the header this build generated ({GENERATED}). build.rs updates it \
         when src/ffi/ or cbindgen.toml changes, unless the source tree is read-only or the \
         header was edited by hand since. Regenerate it with `touch build.rs && cargo build`, \
         check the diff, and commit include/jobrunner.h.",
        committed_path().display()
    );
}

#[test]
fn version_macros_match_the_crate() {
    let header = committed();
    for (name, value) in [
        ("MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define JR_VERSION_{name} {value}");
        assert!(
            header.lines().any(|l| l == line),
            "the header lacks `{line}`"
        );
    }
}

#[test]
fn header_has_include_and_extern_c_guards() {
    let header = committed();
    let code: Vec<&str> = header
        .lines()
        .filter(|line| line.starts_with('#') || line.starts_with("extern"))
        .collect();
    assert_eq!(
        code.first().copied(),
        Some("#ifndef JOBRUNNER_H"),
        "the header must open with its include guard"
    );
    assert!(code.contains(&"#define JOBRUNNER_H"));
    assert_eq!(code.last().copied(), Some("#endif  /* JOBRUNNER_H */"));
    assert!(code.contains(&"#ifdef __cplusplus"));
    assert!(code.contains(&"extern \"C\" {"));
}

/// Every declaration (function, type, enum variant, struct field, `#define`) is directly
/// preceded by a `/** ... */` comment. Continuation lines of a declaration, preprocessor
/// guards and closing braces need none.
#[test]
fn every_declaration_is_documented() {
    let header = committed();
    let lines: Vec<&str> = header.lines().collect();
    let mut undocumented = Vec::new();
    let mut in_comment = false;
    let mut open_parens = 0i32;
    for (index, line) in lines.iter().enumerate() {
        let code = line.trim();
        if in_comment {
            in_comment = !code.ends_with("*/");
            continue;
        }
        if code.starts_with("/*") {
            in_comment = !code.ends_with("*/") || code == "/*";
            continue;
        }
        let continuation = open_parens > 0;
        open_parens += code.matches('(').count() as i32 - code.matches(')').count() as i32;
        let needs_doc = !(code.is_empty()
            || continuation
            || code.starts_with('}')
            || code == "extern \"C\" {"
            || (code.starts_with('#') && !code.starts_with("#define"))
            || code == "#define JOBRUNNER_H");
        if needs_doc && !is_doc_comment_end(&lines[..index]) {
            undocumented.push(format!("line {}: {code}", index + 1));
        }
    }
    assert!(
        undocumented.is_empty(),
        "declarations in include/jobrunner.h without a doc comment (add `///` docs to the \
         Rust items in src/ffi/):\n{}",
        undocumented.join("\n")
    );
}

/// Whether the last line of `before` ends a comment that starts with `/**`.
fn is_doc_comment_end(before: &[&str]) -> bool {
    let Some(last) = before.last() else {
        return false;
    };
    if !last.trim_end().ends_with("*/") {
        return false;
    }
    before
        .iter()
        .rev()
        .find(|line| line.contains("/*"))
        .is_some_and(|line| line.trim_start().starts_with("/**"))
}

/// A translation unit that includes the header twice, as a program whose own headers
/// both include it would.
const INCLUDE_TWICE: &str = "#include \"jobrunner.h\"\n\
                             #include \"jobrunner.h\"\n\
                             int main(void) { return JR_VERSION_MAJOR * 0; }\n";

/// The functions the header declares: `jr_` names right before a `(` outside comments
/// (a function-pointer typedef has `(*` there instead).
fn declared_functions(header: &str) -> Vec<String> {
    let mut names: Vec<String> = header
        .lines()
        .filter(|line| !line.trim_start().starts_with('*') && !line.trim_start().starts_with("/"))
        .filter_map(|line| {
            // The identifier right before the first `(`, if it is a `jr_` one.
            let before = &line[..line.find('(')?];
            let name = before.rsplit([' ', '*']).next()?;
            let is_name = name.starts_with("jr_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            is_name.then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The table-driven bad-input test must have rows for every function: a new function
/// without rows fails here.
#[test]
fn every_function_has_bad_input_rows() {
    let header = committed();
    let functions = declared_functions(&header);
    assert!(functions.len() > 40, "found only {functions:?}");
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/test_robustness.c");
    let table = fs::read_to_string(&table).expect("tests/c/test_robustness.c");
    let missing: Vec<&String> = functions
        .iter()
        .filter(|name| !table.contains(&format!("{name}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/c/test_robustness.c has no rows calling {missing:?}: add them to its table"
    );
}

#[test]
fn header_compiles_as_c99() {
    compile(
        "CC",
        "cc",
        "c",
        &[
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wstrict-prototypes",
            "-Wmissing-prototypes",
        ],
    );
}

#[test]
fn header_compiles_as_cxx11() {
    compile(
        "CXX",
        "c++",
        "cpp",
        &["-std=c++11", "-pedantic", "-Wall", "-Wextra", "-Werror"],
    );
}

/// Compiles [`INCLUDE_TWICE`] (as `test.<extension>`) with `$<variable>` or `default`,
/// syntax only, against the committed header; skips with a message if there is no such
/// compiler.
fn compile(variable: &str, default: &str, extension: &str, flags: &[&str]) {
    let compiler = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
    let source = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("header_test.{extension}"));
    fs::write(&source, INCLUDE_TWICE).expect("writing the test translation unit");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let output = Command::new(&compiler)
        .args(flags)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(&include)
        .arg(&source)
        .output();
    match output {
        Err(error) if error.kind() == ErrorKind::NotFound => {
            eprintln!("SKIPPED: compiler `{compiler}` (${variable}) not found");
        }
        Err(error) => panic!("cannot run `{compiler}`: {error}"),
        Ok(output) => assert!(
            output.status.success(),
            "`{compiler} {}` rejected include/jobrunner.h:\n{}",
            flags.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
