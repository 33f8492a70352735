//! Checks that keep the tests themselves honest, made on their source (every `.rs` file under
//! tests/, parsed with syn): every child runs under a deadline, and there is one skip policy.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Method calls that run a child to its end or wait for one with no bound (std's take no
/// arguments, which tells them from a thread scope's `spawn(f)` or a helper's `status(i)`).
/// Only the harness
/// makes them: `Guard` (common/proc.rs), which kills and reaps what it holds, and
/// `run_with_deadline` (common/deadline.rs). Tests use those, or `finish()`.
const UNBOUNDED: [&str; 5] = ["output", "status", "spawn", "wait", "wait_with_output"];

/// Functions that wait for a child with no bound unless told not to.
const BLOCKING_FNS: [&str; 3] = ["waitpid", "waitid", "wait"];

const HARNESS: [&str; 2] = ["common/proc.rs", "common/deadline.rs"];

/// Where the skip policy lives: the only file that may read its variables.
const SKIP_POLICY: &str = "common/skip.rs";

/// What a file does that these checks are about.
#[derive(Default)]
struct Found {
    /// (line, what) of each unbounded call.
    unbounded: Vec<(usize, String)>,
    /// (line, text) of each string literal that names a skip variable.
    skip_vars: Vec<(usize, String)>,
}

impl<'ast> Visit<'ast> for Found {
    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        let name = m.method.to_string();
        if UNBOUNDED.contains(&name.as_str()) && m.args.is_empty() {
            let line = m.method.span().start().line;
            self.unbounded.push((line, format!(".{name}()")));
        }
        syn::visit::visit_expr_method_call(self, m);
    }

    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = &*c.func
            && let Some(last) = p.path.segments.last()
            && BLOCKING_FNS.contains(&last.ident.to_string().as_str())
            && p.path.segments.len() > 1
        {
            let line = last.ident.span().start().line;
            self.unbounded.push((line, format!("{}()", last.ident)));
        }
        syn::visit::visit_expr_call(self, c);
    }

    /// Doc comments say what the code does; they decide nothing.
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    fn visit_lit_str(&mut self, s: &'ast syn::LitStr) {
        let text = s.value();
        if text.contains("PIDBEAT_REQUIRE") || text.contains("SKIP") {
            self.skip_vars.push((s.span().start().line, text));
        }
    }
}

fn scan(source: &str) -> Found {
    let file = syn::parse_file(source).unwrap_or_else(|e| panic!("does not parse: {e}"));
    let mut found = Found::default();
    found.visit_file(&file);
    found
}

/// Every `.rs` file under `dir`, as its path relative to `root`, sorted.
fn sources(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p.strip_prefix(root).unwrap().to_owned());
        }
    }
    out.sort();
}

/// Each test source (relative to tests/) with what it does.
fn scan_tests() -> Vec<(String, Found)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(files.len() > 40, "found only {files:?}");
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f)).unwrap();
            let name = f.to_string_lossy().into_owned();
            let found = scan(&text);
            (name, found)
        })
        .collect()
}

#[test]
fn every_child_runs_under_a_deadline() {
    let mut bypass = Vec::new();
    for (file, found) in scan_tests() {
        if HARNESS.contains(&file.as_str()) {
            continue;
        }
        for (line, what) in found.unbounded {
            bypass.push(format!("tests/{file}:{line}: {what}"));
        }
    }
    assert!(
        bypass.is_empty(),
        "children waited for without a deadline (use `.finish()`, `run_with_deadline` or a \
         `Guard`):\n{}",
        bypass.join("\n")
    );
}

#[test]
fn there_is_one_skip_policy() {
    let mut elsewhere = Vec::new();
    for (file, found) in scan_tests() {
        if file == SKIP_POLICY || file == "harness.rs" {
            continue;
        }
        for (line, text) in found.skip_vars {
            elsewhere.push(format!("tests/{file}:{line}: {text:?}"));
        }
    }
    assert!(
        elsewhere.is_empty(),
        "skip decisions outside common::skip:\n{}",
        elsewhere.join("\n")
    );
}

/// The checks see what they look for, wherever it stands in a file, and nothing in strings
/// or comments.
#[test]
fn the_checks_find_what_they_look_for() {
    let f = scan(
        r#"
// .output() in a comment
/// `PIDBEAT_REQUIRE_TOOLS=1` in a doc comment
fn f(c: &mut std::process::Command) {
    let _ = c.output();
    let _ = "x.status() in a string";
    let g = || c.args(["a"]).status();
    nix::sys::wait::waitpid(p, None);
    if std::env::var("PIDBEAT_REQUIRE_TOOLS").is_ok() {}
}
"#,
    );
    assert_eq!(
        f.unbounded,
        [
            (5, ".output()".to_owned()),
            (7, ".status()".to_owned()),
            (8, "waitpid()".to_owned())
        ]
    );
    assert_eq!(f.skip_vars, [(9, "PIDBEAT_REQUIRE_TOOLS".to_owned())]);
}
