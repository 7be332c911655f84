//! Handing memory back to the operating system after a burst.
//!
//! The binary uses the system allocator (glibc's malloc on Linux), chosen deliberately:
//! it is the fastest to build, and in steady state the hub's allocations are small and
//! short-lived. Its one weakness here is a burst of many small allocations — parsing a
//! 64 MiB restore body into a JSON tree takes over a GiB in small blocks — after which
//! glibc keeps the freed pages mapped in its arenas. [`release_free_memory`] asks it to
//! return them (`malloc_trim(0)`, which also releases free pages in the middle of every
//! arena), so the resident set comes back near its baseline after such a request
//! (measured by `crates/stocky/tests/memory.rs`; the bound is in docs/security.md §9.1).

/// Returns the allocator's free pages to the operating system (a no-op where the
/// allocator is not glibc's). Takes milliseconds after a large burst: call it off the
/// async workers ([`release_after_burst`]).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: `malloc_trim` takes no pointers and only walks glibc's own arenas under
        // their locks; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Releases free memory on a blocking thread once `self` is dropped: hold one for the
/// duration of a request that allocates a burst.
#[derive(Debug, Default)]
pub struct ReleaseOnDrop;

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        release_after_burst();
    }
}

/// [`release_free_memory`] on tokio's blocking pool (or right here outside a runtime).
pub fn release_after_burst() {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(release_free_memory);
        }
        Err(_) => release_free_memory(),
    }
}
