//! `pidbeat run` as PID 1 of real Docker containers (issue 19), read from the host through
//! each container's bind-mounted run dir: `docker stop` (default and `--stop-signal
//! SIGQUIT`), `docker kill -s USR1/USR2/HUP` reaching the child, `docker kill` (lost), a
//! `-m 32m` OOM kill (dead, oom), `--read-only` and `-u 1000` (the app runs; the record
//! where it can be written), `docker run -it` Ctrl-C (exactly once), `docker pause` (stale,
//! then alive again), `docker restart` (a new incarnation), and a host-side `pidbeat watch`
//! of a container's PID 1.
//!
//! One engine for the whole run (`engine.rs`): the one that answers `docker info`, else a
//! private `dockerd` under a temp dir, stopped and removed at the end. One image
//! (`image.rs`), imported from a rootfs made here: busybox-static and pidbeat with the
//! libraries `ldd` names. Every container runs with `--network none`; no Docker network is
//! ever created (their default address pools are private ranges). Where no engine can run,
//! the test fails under `PIDBEAT_REQUIRE_TOOLS` and says so loudly elsewhere.
//!
//! The cases run in parallel threads of one test, which owns the engine and the image.

use crate::common;

mod cases;
mod engine;
mod image;

#[test]
fn pidbeat_run_as_pid_1_of_docker_containers() {
    let Some(engine) = engine::Engine::start() else {
        return;
    };
    let image = image::Image::build(&engine);
    cases::run_all(&engine, &image);
    drop(image);
    drop(engine);
}
