//! Which CPU the hot thread is pinned to, and which the other threads get.
//!
//! The candidates are the CPUs this process may run on (`sched_getaffinity`, which already
//! reflects a container's cgroup cpuset), not every CPU of the machine. The hot thread takes
//! `ROBSON_HOT_CPU` if it is allowed, else the last allowed CPU (the first ones are where the
//! kernel and other processes tend to land); the I/O, cold and HTTP threads share the rest, or
//! the same CPU when only one is allowed.

use core_affinity::CoreId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub hot: Option<usize>,
    pub others: Vec<usize>,
}

/// Decides from the allowed CPUs and the operator's choice; Err names why the choice is bad.
pub fn place(allowed: &[usize], requested: Option<usize>) -> Result<Placement, String> {
    if allowed.is_empty() {
        // No affinity information (unsupported platform): run unpinned rather than refuse.
        return Ok(Placement { hot: None, others: Vec::new() });
    }
    let hot = match requested {
        Some(cpu) if allowed.contains(&cpu) => cpu,
        Some(cpu) => {
            return Err(format!(
                "ROBSON_HOT_CPU: CPU {cpu} is not allowed for this process (allowed: {allowed:?})"
            ));
        }
        None => *allowed.iter().max().expect("non-empty"),
    };
    let mut others: Vec<usize> = allowed.iter().copied().filter(|&c| c != hot).collect();
    if others.is_empty() {
        others.push(hot);
    }
    Ok(Placement { hot: Some(hot), others })
}

/// The CPUs this process may use, as the OS reports them.
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect()
}

/// Pins the calling thread; false if the OS refused.
pub fn pin_current(cpu: usize) -> bool {
    core_affinity::set_for_current(CoreId { id: cpu })
}
