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

/// The functions the header declares, each with its parameters as written (`struct
/// jr_pool *pool`), in order; `(void)` gives none.
fn declared_signatures(header: &str) -> Vec<(String, Vec<String>)> {
    let code: Vec<&str> = header
        .lines()
        .filter(|line| !line.trim_start().starts_with('*') && !line.trim_start().starts_with('/'))
        .collect();
    let code = code.join("\n");
    let mut signatures = Vec::new();
    for name in declared_functions(header) {
        let Some(start) = code
            .find(&format!(" {name}("))
            .or_else(|| code.find(&format!("*{name}(")))
        else {
            continue;
        };
        let open = start + code[start..].find('(').unwrap();
        let close = open + code[open..].find(')').unwrap();
        let params: Vec<String> = code[open + 1..close]
            .split(',')
            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|p| p != "void" && !p.is_empty())
            .collect();
        signatures.push((name, params));
    }
    signatures
}

/// Whether a header parameter is a pointer (a `*`, or a function-pointer typedef).
fn is_pointer(param: &str) -> bool {
    param.contains('*') || param.contains("_fn ") || param.contains("_hook ")
}

/// The arguments of every call of `name` in `source`, split at the top-level commas.
fn calls_of(source: &str, name: &str) -> Vec<Vec<String>> {
    let mut calls = Vec::new();
    let pattern = format!("{name}(");
    let mut from = 0;
    while let Some(at) = source[from..].find(&pattern) {
        let begin = from + at;
        from = begin + pattern.len();
        // A whole identifier only (not jr_job_free inside xjr_job_free).
        let before = source[..begin].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let mut depth = 0;
        let mut args = vec![String::new()];
        for c in source[from..].chars() {
            match c {
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' if depth == 0 => break,
                ')' | '}' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    args.push(String::new());
                    continue;
                }
                _ => {}
            }
            args.last_mut().unwrap().push(c);
        }
        calls.push(args.into_iter().map(|a| a.trim().to_owned()).collect());
    }
    calls
}

fn is_null(argument: &str) -> bool {
    argument == "NULL" || argument.ends_with(")NULL")
}

/// Whether a helper of the table (`static jr_status helper(type *param, ...) { ...
/// name(..., param, ...) ... }`) passes its parameter on as argument `index` of `name`,
/// and a thunk calls the helper with NULL there.
fn through_helpers(source: &str, name: &str, index: usize) -> bool {
    let mut from = 0;
    while let Some(at) = source[from..].find("\nstatic jr_status ") {
        let start = from + at + "\nstatic jr_status ".len();
        from = start;
        let Some(open) = source[start..].find('(').map(|o| start + o) else {
            break;
        };
        let helper = &source[start..open];
        if !helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let close = open + source[open..].find(')').unwrap();
        let params: Vec<&str> = source[open + 1..close]
            .split(',')
            .map(|p| p.trim().rsplit([' ', '*']).next().unwrap_or(""))
            .collect();
        let end = close
            + source[close..]
                .find("\n}\n")
                .unwrap_or(source.len() - close);
        let body = &source[close..end];
        for args in calls_of(body, name) {
            let Some(position) = args
                .get(index)
                .and_then(|a| params.iter().position(|p| p == a))
            else {
                continue;
            };
            if calls_of(source, helper)
                .iter()
                .any(|call| call.get(position).is_some_and(|a| is_null(a)))
            {
                return true;
            }
        }
    }
    false
}

/// Stricter than [`every_function_has_bad_input_rows`]: for every function and every
/// pointer parameter of it, the bad-input table of tests/c/test_robustness.c (the thunks,
/// before its `rows` array) calls the function with NULL in that place. Prints the
/// number of calls per function (the table the README quotes).
#[test]
fn every_pointer_parameter_has_a_null_row() {
    let header = committed();
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/test_robustness.c");
    let table = fs::read_to_string(&table).expect("tests/c/test_robustness.c");
    let thunks = &table[..table
        .find("static const row rows[]")
        .expect("the rows array")];
    let signatures = declared_signatures(&header);
    assert_eq!(signatures.len(), declared_functions(&header).len());
    let mut missing = Vec::new();
    let mut counts = Vec::new();
    for (name, params) in &signatures {
        let calls = calls_of(thunks, name);
        counts.push((calls.len(), name.clone()));
        for (index, param) in params.iter().enumerate() {
            if !is_pointer(param) {
                continue;
            }
            let null = calls
                .iter()
                .any(|args| args.get(index).is_some_and(|a| is_null(a)))
                || through_helpers(thunks, name, index);
            if !null {
                missing.push(format!("{name}: parameter {} `{param}`", index + 1));
            }
        }
    }
    counts.sort();
    let total: usize = counts.iter().map(|(n, _)| n).sum();
    eprintln!(
        "bad-input calls per function in tests/c/test_robustness.c: {} functions, {total} calls, \
         min {} ({}), median {}, max {} ({})",
        counts.len(),
        counts[0].0,
        counts[0].1,
        counts[counts.len() / 2].0,
        counts[counts.len() - 1].0,
        counts[counts.len() - 1].1
    );
    for (n, name) in &counts {
        eprintln!("{n:>4}  {name}");
    }
    assert!(
        missing.is_empty(),
        "tests/c/test_robustness.c calls these functions with no NULL in these pointer \
         parameters (add a thunk and a row):\n{}",
        missing.join("\n")
    );
}
