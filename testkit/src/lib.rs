//! Test support shared by the workspace's crates, never linked into the daemon: a counting global
//! allocator for the zero-allocation tests of the hot path, and frames derived from Binance's
//! documented payloads where the documentation prints no example of the case.
//!
//! Counting is armed per thread, so the test harness's other threads never show up: a test arms
//! its own thread around exactly the calls it measures. `NO_ALLOC_TRACE=1` prints a backtrace
//! for every allocation counted, to find where one comes from.

// `GlobalAlloc` is an unsafe trait; each method forwards to `System` unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Install in a test binary with
/// `#[global_allocator] static GLOBAL: testkit::CountingAlloc = testkit::CountingAlloc;`.
pub struct CountingAlloc;

static ARMED_ALLOCS: AtomicU64 = AtomicU64::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialised and without a destructor: reading it from inside the allocator never
    // allocates or registers anything.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// Starts or stops counting this thread's allocations.
pub fn set_armed(on: bool) {
    ARMED.with(|armed| armed.set(on));
}

/// Allocations (alloc, alloc_zeroed, realloc) counted so far, on every armed thread.
pub fn armed_allocations() -> u64 {
    ARMED_ALLOCS.load(Relaxed)
}

/// Turns on a backtrace per counted allocation when `NO_ALLOC_TRACE` is set.
pub fn trace_from_env() {
    TRACE.store(std::env::var_os("NO_ALLOC_TRACE").is_some(), Relaxed);
}

fn note_alloc(layout: Layout) {
    // Disarmed while noting, so that the backtrace's own allocations are not counted (nor traced).
    if !ARMED.try_with(|armed| armed.replace(false)).unwrap_or(false) {
        return;
    }
    ARMED_ALLOCS.fetch_add(1, Relaxed);
    if TRACE.load(Relaxed) {
        eprintln!(
            "allocation of {} bytes while armed:\n{}",
            layout.size(),
            Backtrace::force_capture()
        );
    }
    let _ = ARMED.try_with(|armed| armed.set(true));
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(layout);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Binance documents `executionReport` only for a new order (`spot_wsapi_executionReport.json`):
/// this turns that payload into one trade of `qty` for `quote` with order status `status`, at
/// price 0.10264410 and trade id 12345678901 (past 2^32, as real ids are).
pub fn execution_report_as_trade(report: &str, status: &str, qty: &str, quote: &str) -> String {
    report
        .replace(r#""x": "NEW""#, r#""x": "TRADE""#)
        .replace(r#""X": "NEW""#, &format!(r#""X": "{status}""#))
        .replace(r#""l": "0.00000000""#, &format!(r#""l": "{qty}""#))
        .replace(r#""z": "0.00000000""#, &format!(r#""z": "{qty}""#))
        .replace(r#""L": "0.00000000""#, r#""L": "0.10264410""#)
        .replace(r#""Z": "0.00000000""#, &format!(r#""Z": "{quote}""#))
        .replace(r#""t": -1"#, r#""t": 12345678901"#)
}
