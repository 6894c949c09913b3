//! `--seccomp=on`: a forbidden call raises SIGSYS in the thread that made
//! it; the handler writes one line naming the thread, its kind and the
//! call, then ends vfvm (see the parent module for why the whole process).
//! It uses only async-signal-safe calls (`write`, `exit_group`), which
//! every allowlist has, and reads only this thread's thread-locals.

use std::cell::Cell;
use std::io;

use super::syscall_names;
use super::ThreadKind;

/// The exit status of a vfvm ended by a forbidden call: vfvm's "error".
const STATUS: i32 = 4;

thread_local! {
    /// The calling thread's kind, once it entered its sandbox.
    static KIND: Cell<Option<ThreadKind>> = const { Cell::new(None) };
    /// Its name (as `ps` shows it), NUL-padded.
    static NAME: Cell<[u8; 16]> = const { Cell::new([0; 16]) };
}

/// Records the calling thread's kind and name for the handler.
pub(super) fn name_thread(kind: ThreadKind) {
    let mut name = [0u8; 16];
    let given = std::thread::current()
        .name()
        .unwrap_or("vfvm")
        .as_bytes()
        .to_vec();
    let n = given.len().min(15);
    name[..n].copy_from_slice(&given[..n]);
    KIND.with(|k| k.set(Some(kind)));
    NAME.with(|c| c.set(name));
}

/// The part of `siginfo_t` SIGSYS fills in (`_sigsys` in the kernel's union).
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: *mut libc::c_void,
    syscall: i32,
    arch: u32,
}

/// The line for a forbidden call `nr` with first arguments `args` by
/// thread `name` of `kind`.
pub(super) fn message(
    buf: &mut Line,
    kind: Option<ThreadKind>,
    name: &[u8],
    nr: i32,
    args: [u64; 2],
) {
    buf.push(b"vfvm: error: seccomp: the ");
    buf.push(kind.map_or("unsandboxed", ThreadKind::name).as_bytes());
    buf.push(b" thread '");
    buf.push(name);
    buf.push(b"' made the system call ");
    match syscall_names::name(nr) {
        Some(n) => buf.push(n.as_bytes()),
        None => buf.push(b"?"),
    }
    buf.push(b" (");
    buf.number(nr);
    buf.push(b", arguments ");
    buf.hex(args[0]);
    buf.push(b", ");
    buf.hex(args[1]);
    buf.push(b", ...), which its filter forbids; vfvm stops (report it as a bug; --seccomp=log lets it run and logs it to the kernel log; what vfvm changed on the host is put back at the next vfvm run or by vfvm recover)\n");
}

/// A fixed buffer that formats without allocating.
pub(super) struct Line {
    bytes: [u8; 512],
    len: usize,
}

impl Line {
    pub(super) const fn new() -> Self {
        Line {
            bytes: [0; 512],
            len: 0,
        }
    }

    fn push(&mut self, s: &[u8]) {
        for &b in s {
            if b == 0 {
                break;
            }
            if self.len < self.bytes.len() {
                self.bytes[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn number(&mut self, n: i32) {
        let mut digits = [0u8; 12];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.push(b"-");
        }
        self.push(&digits[i..]);
    }

    fn hex(&mut self, v: u64) {
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        let mut v = v;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.push(b"0x");
        self.push(&digits[i..]);
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for SIGSYS with
    // SA_SIGINFO, whose union holds `_sigsys` (SigsysInfo's layout).
    let nr = unsafe { (*info.cast::<SigsysInfo>()).syscall };
    // SAFETY: with SA_SIGINFO the third argument is the interrupted
    // thread's ucontext_t; its registers hold the call's arguments.
    let args = unsafe {
        let regs = &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
        [
            regs[libc::REG_RDI as usize] as u64,
            regs[libc::REG_RSI as usize] as u64,
        ]
    };
    let kind = KIND.with(Cell::get);
    let name = NAME.with(Cell::get);
    let mut line = Line::new();
    message(&mut line, kind, &name, nr, args);
    let bytes = line.as_bytes();
    // SAFETY: write(2) and _exit(2) (exit_group) are async-signal-safe;
    // the buffer is ours and `bytes.len()` long.
    unsafe {
        libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(STATUS);
    }
}

/// Installs the SIGSYS handler for the whole process.
pub(super) fn install() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler is an extern "C"
    // function that only makes async-signal-safe calls.
    let r = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sigsys as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
