//! Event sets: registration and delivery of the scenario's events.

use std::ffi::c_void;
use std::time::{Duration, Instant};

use super::{EventData, NO_ID, Out, api};
use crate::scenario::{EVENT_TYPES_SUPPORTED, Scenario};
use crate::state::{
    EventSetState, INVALID_ARGUMENT, NOT_SUPPORTED, POLL, State, TIMEOUT, Target, lock, set_handle,
    set_id,
};

/// `nvmlEventSetCreate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut *mut c_void) -> u32 {
    api(|| {
        // SAFETY: NVML contract for `set`.
        let out = unsafe { Out::new(set) }?;
        let mut st = lock();
        st.ready()?;
        st.next_set += 1;
        let id = st.next_set;
        st.sets.insert(id, EventSetState::default());
        out.set(set_handle(id));
        Ok(())
    })
}

/// `nvmlEventSetFree`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlEventSetFree(set: *mut c_void) -> u32 {
    api(|| {
        let mut st = lock();
        st.ready()?;
        let id = set_id(set).ok_or(INVALID_ARGUMENT)?;
        st.sets.remove(&id).map(|_| ()).ok_or(INVALID_ARGUMENT)
    })
}

/// `nvmlDeviceRegisterEvents`: GPUs only (`NOT_SUPPORTED` on MIG devices and for types
/// outside [`EVENT_TYPES_SUPPORTED`]); masks accumulate per GPU.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceRegisterEvents(
    device: *mut c_void,
    event_types: u64,
    set: *mut c_void,
) -> u32 {
    api(|| {
        let mut st = lock();
        let id = set_id(set).ok_or(INVALID_ARGUMENT)?;
        let gpu = {
            let c = st.device(device)?;
            c.gpu_only()?;
            c.check(&["events"])?;
            c.t.gpu
        };
        if event_types & !EVENT_TYPES_SUPPORTED != 0 {
            return Err(NOT_SUPPORTED);
        }
        let reg = st.sets.get_mut(&id).ok_or(INVALID_ARGUMENT)?;
        *reg.masks.entry(gpu).or_insert(0) |= event_types;
        Ok(())
    })
}

/// The next undelivered event for set `id`, marked delivered.
fn next_event(st: &mut State, id: u64) -> Result<Option<EventData>, u32> {
    let State { sets, scenario, .. } = st;
    let set = sets.get_mut(&id).ok_or(INVALID_ARGUMENT)?;
    let found = scenario.events.iter().enumerate().find(|(i, e)| {
        !set.delivered.contains(i)
            && set
                .masks
                .get(&e.gpu)
                .is_some_and(|m| m & e.kind.mask() != 0)
    });
    let Some((i, e)) = found else {
        return Ok(None);
    };
    set.delivered.insert(i);
    Ok(Some(EventData {
        device: event_device(scenario, e.gpu, e.gpu_instance_id, e.compute_instance_id).handle(),
        event_type: e.kind.mask(),
        event_data: e.data,
        gpu_instance_id: e.gpu_instance_id.unwrap_or(NO_ID),
        compute_instance_id: e.compute_instance_id.unwrap_or(NO_ID),
    }))
}

/// The MIG device an event names by instance ids, else its GPU.
fn event_device(s: &Scenario, gpu: u32, gi: Option<u32>, ci: Option<u32>) -> Target {
    let mig = gi.and_then(|gi| {
        let migs = &s.devices.get(gpu as usize)?.mig_instances;
        let same_gi = |m: &&crate::scenario::MigInstance| m.gpu_instance_id == gi;
        migs.iter()
            .position(|m| same_gi(&m) && ci.is_none_or(|ci| m.compute_instance_id == ci))
            .or_else(|| migs.iter().position(|m| same_gi(&m)))
    });
    Target {
        gpu,
        mig: mig.map(|j| j as u32),
    }
}

/// `nvmlEventSetWait_v2`: the next scenario event not yet delivered by this set whose GPU
/// is registered for its type; otherwise waits up to `timeoutms` (re-reading a rewritten
/// scenario every ~10 ms) and returns `NVML_ERROR_TIMEOUT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    set: *mut c_void,
    data: *mut EventData,
    timeoutms: u32,
) -> u32 {
    api(|| {
        // SAFETY: NVML contract for `data`.
        let out = unsafe { Out::new(data) }?;
        let id = set_id(set).ok_or(INVALID_ARGUMENT)?;
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeoutms));
        loop {
            {
                let mut st = lock();
                st.ready()?;
                if let Some(event) = next_event(&mut st, id)? {
                    out.set(event);
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TIMEOUT);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    })
}
