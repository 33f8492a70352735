//! The one skip policy. A test that needs what this machine lacks (a tool, root, a kernel or
//! sandbox feature) calls `skip`. Where tools are required (`PIDBEAT_REQUIRE_TOOLS=1`, which
//! `.ci/run` sets, or `CI=true`) that fails the test. Elsewhere the test passes without
//! running the part it cannot, says so on stderr at once (past libtest's capture), and is
//! counted: the list of skips is printed again when the test binary exits, after libtest's
//! summary.

use std::io::Write;
use std::sync::{Mutex, Once};

/// Every skip of this run: `test: reason`.
static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether a missing tool fails the test: `PIDBEAT_REQUIRE_TOOLS=1` or `CI=true`
/// (`PIDBEAT_REQUIRE_ETCD=1` is an alias of the first).
pub fn tools_required() -> bool {
    let is = |var: &str, value: &str| std::env::var(var).is_ok_and(|v| v == value);
    is("PIDBEAT_REQUIRE_TOOLS", "1") || is("CI", "true") || is("PIDBEAT_REQUIRE_ETCD", "1")
}

/// The calling test cannot run (all of it, or the part the caller then leaves out) because
/// this machine lacks something, `reason`: panics where tools are required, else reports the
/// skip loudly and counts it.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    if tools_required() {
        panic!("{test}: {reason} (tools are required: PIDBEAT_REQUIRE_TOOLS=1 or CI=true)");
    }
    let line = format!("{test}: {reason}");
    // Not `eprintln!`: libtest shows a passing test's captured output to nobody.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED {line} (PIDBEAT_REQUIRE_TOOLS=1 fails instead) !!!!!!!!\n"
    );
    SKIPPED.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    static AT_EXIT: Once = Once::new();
    // SAFETY: `report` is an `extern "C" fn` that cannot unwind: it takes a poisoned lock as
    // it is and ignores write errors.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(report);
    });
}

/// Prints the skips once the test binary exits.
extern "C" fn report() {
    let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\n!!!!!!!! {} SKIPPED (PIDBEAT_REQUIRE_TOOLS=1 fails instead):",
        skipped.len()
    );
    for s in skipped.iter() {
        let _ = writeln!(err, "!!!!!!!!   {s}");
    }
}

/// Whether `program` is on PATH; if not, `skip`s, naming `package` (the Debian package).
pub fn have(program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
    if !found {
        skip(&format!(
            "{program} is not on PATH (Debian package `{package}`)"
        ));
    }
    found
}
