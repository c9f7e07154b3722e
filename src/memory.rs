//! Keeping PID 1's resident memory small while it supervises.
//!
//! swarm-init is one static binary: its start-up (glibc's and Rust's
//! initialisation, argument and environment parsing) touches code spread over
//! most of the executable, and the kernel maps file pages in 64 KiB windows
//! around every touched page, so a freshly started PID 1 has about a megabyte
//! of its own executable resident, most of which it will never run again.
//!
//! Once the main child is running, PID 1 tells the kernel it no longer needs
//! the read-only parts of its executable (`MADV_DONTNEED` on every loadable
//! segment that is never writable: code and constants). Those pages are clean
//! copies of the file, so nothing is lost: any page the supervisor loop does
//! touch later is mapped back from the page cache on first use. Writable
//! segments, including RELRO data that was written during relocation, are
//! never touched: dropping them would undo the relocation.

use std::ffi::c_void;

/// Returns the executable's read-only pages to the kernel; logs how much.
pub fn release_startup_pages() {
    let mut released: usize = 0;
    // SAFETY: the callback only reads the program headers glibc hands it and
    // writes to `released`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(release_main_program),
            (&mut released as *mut usize).cast::<c_void>(),
        )
    };
    log::debug!(
        "returned {} KiB of start-up pages of the executable",
        released / 1024
    );
}

/// `dl_iterate_phdr` reports the main program first; stop after it.
extern "C" fn release_main_program(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: glibc passes a valid info pointer and our `released` counter.
    let (info, released) = unsafe { (&*info, &mut *data.cast::<usize>()) };
    if info.dlpi_phdr.is_null() {
        return 1;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return 1,
    };
    for header in headers {
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        let start = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
        let end = start.wrapping_add(header.p_memsz as usize);
        // Shrink to whole pages inside the segment, so that a page shared
        // with a neighbouring segment is never included.
        let start = start.div_ceil(page) * page;
        let end = end / page * page;
        if end <= start {
            continue;
        }
        // SAFETY: a page-aligned range inside a mapped, never-written
        // segment of our own executable; its contents come back from the
        // file on the next access.
        let rc = unsafe { libc::madvise(start as *mut c_void, end - start, libc::MADV_DONTNEED) };
        if rc == 0 {
            *released += end - start;
        }
    }
    1
}
