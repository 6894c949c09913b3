//! Loading a Linux kernel for the 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst): the kernel image (bzImage or ELF
//! vmlinux, told apart by their magic numbers), the command line, the
//! initrd and the zero page (`struct boot_params`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{bzimage::BzImage, elf::Elf, load_cmdline, Cmdline, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::e820::e820_map;
use crate::layout::{
    CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, MMIO_HOLE_START, ZERO_PAGE_START,
};

/// Errors of kernel loading.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The kernel file is neither an ELF vmlinux nor a bzImage.
    #[error("{0} is not a Linux kernel (neither an ELF vmlinux nor a bzImage)")]
    NotAKernel(PathBuf),
    /// The bzImage is too old for the 64-bit boot protocol.
    #[error("{path} does not support the 64-bit boot protocol (boot protocol {version:#x}, xloadflags {xloadflags:#x}; need 2.12 with XLF_KERNEL_64)")]
    No64BitEntry {
        /// The kernel.
        path: PathBuf,
        /// Its boot protocol version.
        version: u16,
        /// Its xloadflags.
        xloadflags: u16,
    },
    /// linux-loader rejected the kernel.
    #[error("cannot load kernel {path}: {source}")]
    Load {
        /// The kernel.
        path: PathBuf,
        /// The loader error.
        source: linux_loader::loader::Error,
    },
    /// The command line is longer than the kernel or the layout accepts.
    #[error("kernel command line is {len} bytes, the maximum is {max}")]
    CmdlineTooLong {
        /// Its length, without the terminating NUL.
        len: usize,
        /// The maximum length, without the terminating NUL.
        max: usize,
    },
    /// linux-loader rejected the command line.
    #[error("invalid kernel command line: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    /// Writing the command line to guest memory failed.
    #[error("cannot write the kernel command line: {0}")]
    LoadCmdline(linux_loader::loader::Error),
    /// The initrd does not fit between the kernel and the highest address it
    /// may occupy.
    #[error("initrd {path} ({size} bytes) too big for memory: it must lie between {low:#x} and {high:#x}")]
    InitrdTooBig {
        /// The initrd.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Lowest address it may occupy (end of the kernel).
        low: u64,
        /// End (exclusive) of where it may lie.
        high: u64,
    },
    /// Reading the initrd into guest memory failed.
    #[error("cannot load initrd {path} into guest memory: {source}")]
    LoadInitrd {
        /// The initrd.
        path: PathBuf,
        /// The guest memory error.
        source: vm_memory::GuestMemoryError,
    },
    /// Writing the zero page failed.
    #[error("cannot write the zero page: {0}")]
    ZeroPage(vm_memory::GuestMemoryError),
    /// The E820 map does not fit the zero page.
    #[error("E820 map has {0} entries, the zero page holds 128")]
    E820TooLong(usize),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// What to boot.
#[derive(Clone, Copy, Debug)]
pub struct KernelConfig<'a> {
    /// bzImage or ELF vmlinux.
    pub kernel: &'a Path,
    /// Optional initrd/initramfs.
    pub initrd: Option<&'a Path>,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Guest RAM size, laid out as in [`crate::layout::ram_ranges`].
    pub mem_size: u64,
    /// Address of the ACPI RSDP (from [`crate::acpi::create_acpi_tables`]).
    pub rsdp: GuestAddress,
}

/// Where the boot vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// The 64-bit entry point (RIP).
    pub entry: GuestAddress,
    /// The zero page (RSI).
    pub zero_page: GuestAddress,
}

/// `boot_flag` magic of the setup header.
const BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `header` magic ("HdrS") of the setup header.
const HDRS_MAGIC: u32 = 0x5372_6448;
/// Offset of the `header` field in a bzImage.
const HDRS_OFFSET: u64 = 0x202;
/// `type_of_loader` for an unregistered boot loader.
const LOADER_UNDEFINED: u8 = 0xff;
/// `loadflags`: protected-mode code is loaded at 0x100000.
const LOADED_HIGH: u8 = 1 << 0;
/// `xloadflags`: the kernel has the 64-bit entry at +0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// Offset of the 64-bit entry point from the bzImage load address.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// `kernel_alignment` reported for ELF kernels (16 MiB, CONFIG_PHYSICAL_ALIGN's default).
const ELF_KERNEL_ALIGNMENT: u32 = 0x100_0000;
/// Boot protocol 2.12, which introduced `xloadflags`.
const BOOT_PROTOCOL_2_12: u16 = 0x020c;
/// Boot protocol 2.06, which introduced `cmdline_size`.
const BOOT_PROTOCOL_2_06: u16 = 0x0206;
const PAGE_SIZE: u64 = 0x1000;
const ELF_MAGIC: [u8; 4] = *b"\x7fELF";

/// The kernel image formats we boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An ELF vmlinux.
    Elf,
    /// A bzImage.
    BzImage,
}

/// How many leading bytes of an image [`kernel_format`] looks at.
pub const KERNEL_HEAD_LEN: usize = HDRS_OFFSET as usize + 4;

/// Tells an ELF vmlinux from a bzImage by the magic numbers in the first
/// [`KERNEL_HEAD_LEN`] bytes of the image; `None` for anything else.
pub fn kernel_format(head: &[u8]) -> Option<KernelFormat> {
    if head.starts_with(&ELF_MAGIC) {
        return Some(KernelFormat::Elf);
    }
    let hdrs = head.get(HDRS_OFFSET as usize..KERNEL_HEAD_LEN)?;
    (hdrs == HDRS_MAGIC.to_le_bytes()).then_some(KernelFormat::BzImage)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The format of the image in `file`.
fn file_format(path: &Path, file: &mut File) -> Result<Option<KernelFormat>> {
    let mut head = Vec::with_capacity(KERNEL_HEAD_LEN);
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    file.take(KERNEL_HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io_err(path))?;
    Ok(kernel_format(&head))
}

/// The kernel as loaded: its setup header, entry point and end.
struct LoadedKernel {
    hdr: setup_header,
    entry: GuestAddress,
    /// End of the memory the kernel needs: for a bzImage, load address +
    /// `init_size` (the decompressor works in place).
    end: u64,
}

fn load_kernel_image<M: GuestMemoryBackend>(mem: &M, path: &Path) -> Result<LoadedKernel> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let load_err = |source| Error::Load {
        path: path.to_path_buf(),
        source,
    };
    match file_format(path, &mut file)? {
        Some(KernelFormat::Elf) => {
            let res = Elf::load(mem, None, &mut file, Some(HIMEM_START)).map_err(load_err)?;
            let hdr = setup_header {
                boot_flag: BOOT_FLAG_MAGIC,
                header: HDRS_MAGIC,
                kernel_alignment: ELF_KERNEL_ALIGNMENT,
                ..Default::default()
            };
            Ok(LoadedKernel {
                hdr,
                entry: res.kernel_load,
                end: res.kernel_end,
            })
        }
        Some(KernelFormat::BzImage) => {
            let res = BzImage::load(mem, None, &mut file, Some(HIMEM_START)).map_err(load_err)?;
            // BzImage::load always returns the header it validated.
            let hdr = res.setup_header.unwrap_or_default();
            if hdr.version < BOOT_PROTOCOL_2_12 || hdr.xloadflags & XLF_KERNEL_64 == 0 {
                return Err(Error::No64BitEntry {
                    path: path.to_path_buf(),
                    version: hdr.version,
                    xloadflags: hdr.xloadflags,
                });
            }
            let init_end = res.kernel_load.0 + u64::from(hdr.init_size);
            Ok(LoadedKernel {
                hdr,
                entry: GuestAddress(res.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET),
                end: res.kernel_end.max(init_end),
            })
        }
        None => Err(Error::NotAKernel(path.to_path_buf())),
    }
}

/// The longest command line (without NUL) that the kernel and the layout accept.
fn cmdline_max_len(hdr: &setup_header) -> usize {
    let layout_max = CMDLINE_MAX_SIZE - 1;
    if hdr.version >= BOOT_PROTOCOL_2_06 && hdr.cmdline_size != 0 {
        layout_max.min(hdr.cmdline_size as usize)
    } else {
        layout_max
    }
}

/// Where the initrd of `size` bytes goes: page-aligned, as high as possible
/// below `min(RAM end, 3 GiB, initrd_addr_max + 1)` and not below
/// `kernel_end`. `None` if it does not fit.
fn initrd_address(mem_size: u64, hdr: &setup_header, kernel_end: u64, size: u64) -> Option<u64> {
    let mut high = mem_size.min(MMIO_HOLE_START.0);
    if hdr.initrd_addr_max != 0 {
        high = high.min(u64::from(hdr.initrd_addr_max) + 1);
    }
    let start = high.checked_sub(size)? & !(PAGE_SIZE - 1);
    (start >= kernel_end).then_some(start)
}

/// Builds the zero page.
fn build_boot_params(
    hdr: setup_header,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
    mem_size: u64,
    rsdp: GuestAddress,
) -> Result<boot_params> {
    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: rsdp.0,
        ..Default::default()
    };
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.loadflags |= LOADED_HIGH;
    params.hdr.cmd_line_ptr = CMDLINE_START.0 as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some((addr, size)) = initrd {
        // Both below 3 GiB: the ext_ramdisk_* high halves stay 0.
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820_map(mem_size);
    if map.len() > params.e820_table.len() {
        return Err(Error::E820TooLong(map.len()));
    }
    for (slot, e) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = map.len() as u8;
    Ok(params)
}

/// Loads the kernel, command line and initrd of `cfg` into `mem` and writes
/// the zero page. Returns the 64-bit entry point (bzImage: load address +
/// 0x200; ELF: `e_entry`) and the zero page address.
pub fn load_kernel<M: GuestMemoryBackend>(mem: &M, cfg: &KernelConfig) -> Result<BootInfo> {
    let kernel = load_kernel_image(mem, cfg.kernel)?;

    let max = cmdline_max_len(&kernel.hdr);
    if cfg.cmdline.len() > max {
        return Err(Error::CmdlineTooLong {
            len: cfg.cmdline.len(),
            max,
        });
    }
    let cmdline = Cmdline::try_from(cfg.cmdline, CMDLINE_MAX_SIZE).map_err(Error::Cmdline)?;
    load_cmdline(mem, CMDLINE_START, &cmdline).map_err(Error::LoadCmdline)?;

    let initrd = match cfg.initrd {
        Some(path) => {
            let mut file = File::open(path).map_err(io_err(path))?;
            let size = file.metadata().map_err(io_err(path))?.len();
            let low = kernel.end.max(HIMEM_START.0);
            let addr = initrd_address(cfg.mem_size, &kernel.hdr, low, size).ok_or_else(|| {
                Error::InitrdTooBig {
                    path: path.to_path_buf(),
                    size,
                    low,
                    high: cfg.mem_size.min(MMIO_HOLE_START.0),
                }
            })?;
            mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
                .map_err(|source| Error::LoadInitrd {
                    path: path.to_path_buf(),
                    source,
                })?;
            Some((addr, size))
        }
        None => None,
    };

    let params = build_boot_params(
        kernel.hdr,
        cfg.cmdline.len(),
        initrd,
        cfg.mem_size,
        cfg.rsdp,
    )?;
    mem.write_obj(params, ZERO_PAGE_START)
        .map_err(Error::ZeroPage)?;
    Ok(BootInfo {
        entry: kernel.entry,
        zero_page: ZERO_PAGE_START,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_format_reads_the_magic_numbers() {
        let mut bz = vec![0u8; KERNEL_HEAD_LEN];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(kernel_format(&bz), Some(KernelFormat::BzImage));
        assert_eq!(kernel_format(b"\x7fELF\x02"), Some(KernelFormat::Elf));
        assert_eq!(kernel_format(&bz[..0x204]), None, "cut short");
        assert_eq!(kernel_format(&[0u8; KERNEL_HEAD_LEN]), None);
        assert_eq!(kernel_format(&[]), None);
    }
    use crate::layout::MIB;
    use std::io::Write;
    use vm_memory::GuestMemoryMmap;

    const MEM: u64 = 64 * MIB;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
    }

    /// A temporary file removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, data: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!(
                "vfvm-arch-{}-{:?}-{name}",
                std::process::id(),
                std::thread::current().id()
            ));
            File::create(&path).unwrap().write_all(data).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A minimal bzImage: 4 setup sectors (plus the boot sector) and a
    /// payload of `payload` bytes of 0xaa.
    fn bzimage(version: u16, xloadflags: u16, payload: usize) -> Vec<u8> {
        let mut img = vec![0u8; 5 * 512 + payload];
        img[0x1f1] = 4; // setup_sects
        img[0x1fe..0x200].copy_from_slice(&BOOT_FLAG_MAGIC.to_le_bytes());
        img[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        img[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        img[0x211] = LOADED_HIGH; // loadflags
        img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
        img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
        img[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        img[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes()); // cmdline_size
        img[0x260..0x264].copy_from_slice(&(8 * MIB as u32).to_le_bytes()); // init_size
        img[5 * 512..].fill(0xaa);
        img
    }

    /// A minimal ELF64 vmlinux with one PT_LOAD of 16 bytes at 16 MiB.
    fn vmlinux() -> Vec<u8> {
        let mut img = vec![0u8; 0x200];
        img[0..4].copy_from_slice(&ELF_MAGIC);
        img[4] = 2; // ELFCLASS64
        img[5] = 1; // ELFDATA2LSB
        img[6] = 1; // EV_CURRENT
        img[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        img[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        img[20..24].copy_from_slice(&1u32.to_le_bytes());
        img[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // e_entry
        img[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        img[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        img[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        img[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 64;
        img[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        img[ph + 8..ph + 16].copy_from_slice(&0x100u64.to_le_bytes()); // p_offset
        img[ph + 16..ph + 24].copy_from_slice(&0x100_0000u64.to_le_bytes()); // p_vaddr
        img[ph + 24..ph + 32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // p_paddr
        img[ph + 32..ph + 40].copy_from_slice(&16u64.to_le_bytes()); // p_filesz
        img[ph + 40..ph + 48].copy_from_slice(&16u64.to_le_bytes()); // p_memsz
        img[0x100..0x110].fill(0xcc);
        img
    }

    fn config<'a>(
        kernel: &'a Path,
        initrd: Option<&'a Path>,
        cmdline: &'a str,
    ) -> KernelConfig<'a> {
        KernelConfig {
            kernel,
            initrd,
            cmdline,
            mem_size: MEM,
            rsdp: GuestAddress(0xe0000),
        }
    }

    #[test]
    fn boots_bzimage_with_initrd() {
        let mem = mem();
        let kernel = TempFile::new("bz", &bzimage(0x020f, XLF_KERNEL_64, 0x3000));
        let initrd = TempFile::new("initrd", &[0x5a; 5000]);
        let info = load_kernel(
            &mem,
            &config(&kernel.0, Some(&initrd.0), "console=ttyS0 reboot=k"),
        )
        .unwrap();
        assert_eq!(info.entry, GuestAddress(0x10_0200));
        assert_eq!(info.zero_page, ZERO_PAGE_START);

        let payload: u8 = mem.read_obj(GuestAddress(0x10_0000)).unwrap();
        assert_eq!(payload, 0xaa);

        let p: boot_params = mem.read_obj(ZERO_PAGE_START).unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!(hdr.loadflags & LOADED_HIGH, LOADED_HIGH);
        assert_eq!({ hdr.header }, HDRS_MAGIC);
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.cmdline_size }, 22);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);
        // Initrd at the top of RAM, page aligned.
        assert_eq!({ hdr.ramdisk_size }, 5000);
        assert_eq!(u64::from(hdr.ramdisk_image), (MEM - 5000) & !0xfff);
        let first: u8 = mem
            .read_obj(GuestAddress(hdr.ramdisk_image.into()))
            .unwrap();
        assert_eq!(first, 0x5a);
        // E820 from the e820 module.
        let map = e820_map(MEM);
        assert_eq!(p.e820_entries as usize, map.len());
        let e = p.e820_table[2];
        assert_eq!(
            ({ e.addr }, { e.size }, { e.r#type }),
            (0x10_0000, MEM - MIB, 1)
        );

        let mut cmdline = [0u8; 23];
        mem.read_slice(&mut cmdline, CMDLINE_START).unwrap();
        assert_eq!(&cmdline, b"console=ttyS0 reboot=k\0");
    }

    #[test]
    fn boots_elf_vmlinux() {
        let mem = mem();
        let kernel = TempFile::new("elf", &vmlinux());
        let info = load_kernel(&mem, &config(&kernel.0, None, "")).unwrap();
        assert_eq!(info.entry, GuestAddress(0x100_0000));
        let code: u8 = mem.read_obj(GuestAddress(0x100_0000)).unwrap();
        assert_eq!(code, 0xcc);
        let p: boot_params = mem.read_obj(ZERO_PAGE_START).unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, BOOT_FLAG_MAGIC);
        assert_eq!({ hdr.header }, HDRS_MAGIC);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.ramdisk_image }, 0);
        assert_eq!(p.e820_entries, 4);
    }

    #[test]
    fn rejects_non_kernels() {
        let mem = mem();
        let junk = TempFile::new("junk", &[0u8; 0x1000]);
        let err = load_kernel(&mem, &config(&junk.0, None, "")).unwrap_err();
        assert!(matches!(err, Error::NotAKernel(_)));
        assert!(err.to_string().contains(&*junk.0.to_string_lossy()));
        let short = TempFile::new("short", b"ab");
        assert!(matches!(
            load_kernel(&mem, &config(&short.0, None, "")).unwrap_err(),
            Error::NotAKernel(_)
        ));
        let missing = Path::new("/nonexistent/vmlinuz");
        let err = load_kernel(&mem, &config(missing, None, "")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinuz"));
    }

    #[test]
    fn rejects_bzimage_without_64bit_entry() {
        let mem = mem();
        let old = TempFile::new("old", &bzimage(0x020b, 0, 0x1000));
        assert!(matches!(
            load_kernel(&mem, &config(&old.0, None, "")).unwrap_err(),
            Error::No64BitEntry {
                version: 0x020b,
                ..
            }
        ));
    }

    #[test]
    fn rejects_long_cmdline() {
        let mem = mem();
        let kernel = TempFile::new("bzlong", &bzimage(0x020f, XLF_KERNEL_64, 0x1000));
        let long = "a".repeat(2048);
        let err = load_kernel(&mem, &config(&kernel.0, None, &long)).unwrap_err();
        assert!(matches!(
            err,
            Error::CmdlineTooLong {
                len: 2048,
                max: 2047
            }
        ));
        let elf = TempFile::new("elflong", &vmlinux());
        let longer = "a".repeat(CMDLINE_MAX_SIZE);
        let err = load_kernel(&mem, &config(&elf.0, None, &longer)).unwrap_err();
        assert!(matches!(err, Error::CmdlineTooLong { max: 4095, .. }));
    }

    #[test]
    fn rejects_initrd_too_big() {
        let mem = mem();
        let kernel = TempFile::new("bzbig", &bzimage(0x020f, XLF_KERNEL_64, 0x1000));
        // The kernel needs [1 MiB, 9 MiB) (init_size 8 MiB): 56 MiB are left.
        let big = TempFile::new("bigrd", &vec![0u8; 56 * MIB as usize + 1]);
        let err = load_kernel(&mem, &config(&kernel.0, Some(&big.0), "")).unwrap_err();
        assert!(matches!(err, Error::InitrdTooBig { low: 0x90_0000, .. }));
        assert!(err.to_string().contains("too big for memory"));
    }

    #[test]
    fn initrd_placement_limits() {
        let hdr = setup_header {
            initrd_addr_max: 0x37ff_ffff,
            ..Default::default()
        };
        // Capped by initrd_addr_max.
        assert_eq!(
            initrd_address(2 << 30, &hdr, MIB, 0x1800),
            Some(0x3800_0000 - 0x2000)
        );
        // Capped at 3 GiB.
        let any = setup_header::default();
        assert_eq!(
            initrd_address(8 << 30, &any, MIB, 0x1000),
            Some(0xbfff_f000)
        );
        // Does not fit above the kernel.
        assert_eq!(initrd_address(16 * MIB, &any, 15 * MIB, 2 * MIB), None);
        assert_eq!(initrd_address(MIB, &any, MIB, 2 * MIB), None);
    }
}
