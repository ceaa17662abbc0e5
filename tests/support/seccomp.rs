//! A seccomp filter for tests that need io_uring refused, as a container runtime's default
//! profile refuses it.

use std::process::Command;

/// Installs, in the child before exec, a seccomp filter under which `io_uring_setup`,
/// `io_uring_enter` and `io_uring_register` fail with `errno` (`EPERM` under Docker's default
/// profile, `ENOSYS` where a kernel or filter does not know them), and every other system call
/// is allowed.
#[cfg(target_arch = "x86_64")]
pub fn deny_io_uring(command: &mut Command, errno: i32) {
    use std::os::unix::process::CommandExt;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    // struct seccomp_data: `nr` at offset 0, `arch` at offset 4.
    const NR_OFFSET: u32 = 0;
    const ARCH_OFFSET: u32 = 4;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump_if = |k: i64, jt: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf: 0,
        k: k as u32,
    };
    let load = |offset| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let allow = stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW);
    let refuse = stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | errno as u32,
    );
    let filter = [
        load(ARCH_OFFSET),
        // Another architecture's numbers name other calls: allow them; x86_64 skips `allow`.
        jump_if(i64::from(AUDIT_ARCH_X86_64), 1),
        allow,
        load(NR_OFFSET),
        // Each match jumps to `refuse`, past the rest and `allow`.
        jump_if(libc::SYS_io_uring_setup, 3),
        jump_if(libc::SYS_io_uring_enter, 2),
        jump_if(libc::SYS_io_uring_register, 1),
        allow,
        refuse,
    ];
    // SAFETY: the closure runs in the forked child before exec and only makes two prctl(2)
    // system calls on data that lives on its stack (async-signal-safe, no allocation).
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &raw const program,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
