//! An ML-KEM prekey's seed (its private key) leaves no copy in freed memory
//! when the vault's prekeys are serialized: an allocator that looks at every
//! block as it is freed sees no trace of it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use sotto_client::e2e::LocalPrekeys;
use sotto_client::identity::Identity;

/// Bytes of a seed in hex, as the vault holds it.
const NEEDLE_LEN: usize = 128;
static NEEDLE: [AtomicU8; NEEDLE_LEN] = [const { AtomicU8::new(0) }; NEEDLE_LEN];
static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicBool = AtomicBool::new(false);

struct Watching;

unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::SeqCst) && layout.size() >= NEEDLE_LEN {
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            let needle: [u8; NEEDLE_LEN] =
                std::array::from_fn(|i| NEEDLE[i].load(Ordering::SeqCst));
            if block.windows(NEEDLE_LEN).any(|w| w == needle) {
                FOUND.store(true, Ordering::SeqCst);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

#[test]
fn serializing_a_kem_prekey_leaves_no_copy_of_its_seed_in_freed_memory() {
    let identity = Identity::generate();
    let mut prekeys = LocalPrekeys::default();
    prekeys.generate_pq_one_time(&identity, 1);
    let stored = serde_json::to_value(&prekeys).unwrap();
    let seed = stored["pq_one_time"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(seed.len(), NEEDLE_LEN);
    for (slot, byte) in NEEDLE.iter().zip(seed.bytes()) {
        slot.store(byte, Ordering::SeqCst);
    }
    // Room enough that the output never moves (a move frees the old copy).
    let mut out = Vec::with_capacity(1 << 16);
    ARMED.store(true, Ordering::SeqCst);
    serde_json::to_writer(&mut out, &prekeys).unwrap();
    ARMED.store(false, Ordering::SeqCst);
    assert!(out.windows(NEEDLE_LEN).any(|w| w == seed.as_bytes()));
    assert!(
        !FOUND.load(Ordering::SeqCst),
        "a copy of the ML-KEM seed was freed without being wiped"
    );
}
