//! Loading a Linux kernel for the 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst): the kernel image (bzImage or ELF
//! vmlinux, told apart by their magic numbers), the command line, the
//! initrd and the zero page (`struct boot_params`).
//!
//! A bzImage is decompressed by whoever has a CPU for it
//! ([`Decompressor`], the caller's choice). On the host
//! ([`Decompressor::Host`], zstd and gzip payloads: Debian, Ubuntu, Fedora
//! and Arch kernels are zstd), the vmlinux inside is loaded at its physical
//! address and entered at its 64-bit entry (`startup_64`), with the
//! bzImage's own setup header in the zero page: the guest skips its
//! decompressor, and the decoder runs while the threads reserve guest RAM.
//! As with any direct vmlinux boot (Firecracker, Cloud Hypervisor), the
//! kernel's physical and virtual KASLR, which only the decompressor does, is
//! then off. In the guest ([`Decompressor::Guest`], and for payloads we do
//! not decode: xz, lzma, lz4, ...) the whole bzImage is loaded and entered at
//! its 64-bit entry, as Cloud Hypervisor does. resources/BENCH.md (issue 13)
//! has the measurements behind the caller's rule.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{bzimage::BzImage, elf::Elf, load_cmdline, Cmdline, KernelLoader};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

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
    /// The bzImage's payload could not be decompressed.
    #[error("cannot decompress the kernel inside {path} ({format}): {source}")]
    Decompress {
        /// The kernel.
        path: PathBuf,
        /// The payload's compression.
        format: &'static str,
        /// What the decompressor said.
        source: std::io::Error,
    },
    /// The vmlinux inside a bzImage is not one we can load.
    #[error("cannot load the vmlinux inside {path}: {reason}")]
    Vmlinux {
        /// The kernel.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
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

/// What to boot with the kernel ([`read_kernel`]).
#[derive(Clone, Copy, Debug)]
pub struct KernelConfig<'a> {
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
    /// How the kernel was loaded.
    pub how: KernelLoad,
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
/// Boot protocol 2.08, which introduced `payload_offset`/`payload_length`.
const BOOT_PROTOCOL_2_08: u16 = 0x0208;
/// Offset of the setup header in a bzImage.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The most a decompressed payload may claim to be (a kernel is tens of MiB).
const MAX_VMLINUX: usize = 1 << 30;
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
    /// End of the memory the kernel needs: for a bzImage the guest
    /// decompresses, load address + `init_size` (the decompressor works in
    /// place); for a vmlinux, the end of its last segment.
    end: u64,
    /// How it was loaded.
    how: KernelLoad,
}

/// How the kernel was loaded, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelLoad {
    /// An ELF vmlinux, entered directly.
    Vmlinux,
    /// A bzImage whose payload the host decompressed (the format named);
    /// its vmlinux is entered directly.
    Decompressed(&'static str),
    /// A bzImage the guest decompresses itself: the payload's format if it
    /// is one the host could have decoded ([`Decompressor::Guest`] chose
    /// the guest), `None` if not.
    BzImage(Option<&'static str>),
}

/// Who decompresses a bzImage's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decompressor {
    /// vfvm, into guest memory, for the payloads it decodes (zstd, gzip).
    Host,
    /// The guest's own decompressor, at its first instructions.
    Guest,
}

/// A kernel read from its file but not yet in guest memory.
pub struct KernelImage {
    path: PathBuf,
    kind: ImageKind,
}

enum ImageKind {
    /// An ELF vmlinux file, loaded from the file.
    Vmlinux(File),
    /// A bzImage whose payload (at `payload` in `image`) we decompress
    /// into guest memory; its header goes into the zero page.
    Decompressed {
        hdr: setup_header,
        format: &'static str,
        image: Vec<u8>,
        payload: std::ops::Range<usize>,
    },
    /// A whole bzImage, for the guest to decompress; its payload's format
    /// if the host could have decoded it.
    BzImage {
        hdr: setup_header,
        image: Vec<u8>,
        format: Option<&'static str>,
    },
}

impl KernelImage {
    /// How the kernel will be loaded.
    pub fn how(&self) -> KernelLoad {
        match &self.kind {
            ImageKind::Vmlinux(_) => KernelLoad::Vmlinux,
            ImageKind::Decompressed { format, .. } => KernelLoad::Decompressed(format),
            ImageKind::BzImage { format, .. } => KernelLoad::BzImage(*format),
        }
    }
}

/// Opens the kernel at `path`: an ELF vmlinux, or a bzImage (read whole),
/// whose payload `decompressor` decompresses if the host can decode it.
pub fn read_kernel(path: &Path, decompressor: Decompressor) -> Result<KernelImage> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let kind = match file_format(path, &mut file)? {
        Some(KernelFormat::Elf) => ImageKind::Vmlinux(file),
        Some(KernelFormat::BzImage) => {
            let mut image = Vec::new();
            file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
            file.read_to_end(&mut image).map_err(io_err(path))?;
            let hdr = bzimage_header(path, &image)?;
            match (bzimage_payload(&image, &hdr), decompressor) {
                (Some((format, payload)), Decompressor::Host) => ImageKind::Decompressed {
                    hdr,
                    format,
                    payload,
                    image,
                },
                (payload, _) => ImageKind::BzImage {
                    hdr,
                    image,
                    format: payload.map(|(format, _)| format),
                },
            }
        }
        None => return Err(Error::NotAKernel(path.to_path_buf())),
    };
    Ok(KernelImage {
        path: path.to_path_buf(),
        kind,
    })
}

fn load_kernel_image<M: GuestMemoryBackend>(mem: &M, image: KernelImage) -> Result<LoadedKernel> {
    let how = image.how();
    let path = &image.path;
    match image.kind {
        ImageKind::Vmlinux(mut file) => {
            let hdr = setup_header {
                boot_flag: BOOT_FLAG_MAGIC,
                header: HDRS_MAGIC,
                kernel_alignment: ELF_KERNEL_ALIGNMENT,
                ..Default::default()
            };
            load_vmlinux(mem, path, &mut file, hdr, how)
        }
        ImageKind::Decompressed {
            hdr,
            format,
            image,
            payload,
        } => {
            let decompress_err = |source| Error::Decompress {
                path: path.clone(),
                format,
                source,
            };
            let mut vmlinux = payload_reader(format, &image[payload]).map_err(decompress_err)?;
            let (entry, end) = stream_vmlinux(mem, &mut vmlinux).map_err(|e| match e {
                StreamError::Read(source) => decompress_err(source),
                StreamError::Invalid(reason) => Error::Vmlinux {
                    path: path.clone(),
                    reason,
                },
            })?;
            Ok(LoadedKernel {
                hdr,
                entry,
                end,
                how,
            })
        }
        ImageKind::BzImage { hdr, image, .. } => {
            let res = BzImage::load(mem, None, &mut Cursor::new(image), Some(HIMEM_START))
                .map_err(|source| Error::Load {
                    path: path.clone(),
                    source,
                })?;
            let init_end = res.kernel_load.0 + u64::from(hdr.init_size);
            Ok(LoadedKernel {
                hdr,
                entry: GuestAddress(res.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET),
                end: res.kernel_end.max(init_end),
                how,
            })
        }
    }
}

/// Loads the ELF vmlinux in `elf` at its physical addresses; `hdr` goes
/// into the zero page.
fn load_vmlinux<M: GuestMemoryBackend, F>(
    mem: &M,
    path: &Path,
    elf: &mut F,
    hdr: setup_header,
    how: KernelLoad,
) -> Result<LoadedKernel>
where
    F: Read + vm_memory::ReadVolatile + Seek,
{
    let res = Elf::load(mem, None, elf, Some(HIMEM_START)).map_err(|source| Error::Load {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(LoadedKernel {
        hdr,
        entry: res.kernel_load,
        end: res.kernel_end,
        how,
    })
}

/// The bzImage's setup header, checked for the 64-bit entry.
fn bzimage_header(path: &Path, image: &[u8]) -> Result<setup_header> {
    let mut hdr = setup_header::default();
    let len = std::mem::size_of::<setup_header>();
    let bytes = image
        .get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + len)
        .ok_or_else(|| Error::NotAKernel(path.to_path_buf()))?;
    hdr.as_mut_slice().copy_from_slice(bytes);
    if hdr.version < BOOT_PROTOCOL_2_12 || hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(Error::No64BitEntry {
            path: path.to_path_buf(),
            version: hdr.version,
            xloadflags: hdr.xloadflags,
        });
    }
    Ok(hdr)
}

/// The ELF vmlinux inside the bzImage `image` (read from `path`) and its
/// payload's compression, or `None` if the payload is not one we
/// decompress (zstd, gzip).
pub fn bzimage_vmlinux(path: &Path, image: &[u8]) -> Result<Option<(&'static str, Vec<u8>)>> {
    let hdr = bzimage_header(path, image)?;
    let Some((format, payload)) = bzimage_payload(image, &hdr) else {
        return Ok(None);
    };
    let mut vmlinux = Vec::new();
    payload_reader(format, &image[payload])
        .and_then(|r| r.take(MAX_VMLINUX as u64).read_to_end(&mut vmlinux))
        .map_err(|source| Error::Decompress {
            path: path.to_path_buf(),
            format,
            source,
        })?;
    Ok(Some((format, vmlinux)))
}

/// Where a bzImage's compressed payload is, and how it is packed (zstd,
/// gzip; `None` for the others).
fn bzimage_payload(
    image: &[u8],
    hdr: &setup_header,
) -> Option<(&'static str, std::ops::Range<usize>)> {
    if hdr.version < BOOT_PROTOCOL_2_08 {
        return None;
    }
    let setup_sects = if hdr.setup_sects == 0 {
        4
    } else {
        usize::from(hdr.setup_sects)
    };
    let start = (setup_sects + 1) * 512 + hdr.payload_offset as usize;
    let range = start..start.checked_add(hdr.payload_length as usize)?;
    let payload = image.get(range.clone())?;
    if payload.starts_with(&ZSTD_MAGIC) {
        Some(("zstd", range))
    } else if payload.starts_with(&GZIP_MAGIC) {
        Some(("gzip", range))
    } else {
        None
    }
}

/// The decompressed bytes of a bzImage payload: a zstd frame followed by
/// the uncompressed size (4 bytes, little endian, not needed here), or one
/// gzip member.
fn payload_reader<'a>(format: &str, payload: &'a [u8]) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        "zstd" => {
            let frame = &payload[..payload.len().saturating_sub(4)];
            Box::new(zstd::stream::read::Decoder::with_buffer(frame)?.single_frame())
        }
        _ => Box::new(flate2::read::GzDecoder::new(payload)),
    })
}

/// Why a streamed vmlinux could not be loaded.
enum StreamError {
    /// The decompressor failed (or the stream ended early).
    Read(std::io::Error),
    /// The data is not a vmlinux we can load.
    Invalid(String),
}

impl From<std::io::Error> for StreamError {
    fn from(e: std::io::Error) -> Self {
        StreamError::Read(e)
    }
}

/// Bytes an ELF64 header and program header take.
const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;
/// More program headers than a kernel ever has.
const MAX_PHDRS: usize = 64;

/// Loads the ELF vmlinux `elf` streams straight into guest memory: each
/// PT_LOAD segment, in file order, at its physical address, so the
/// decompressed kernel is never held anywhere else. Returns the entry
/// point and the end of the highest segment.
fn stream_vmlinux<M: GuestMemoryBackend>(
    mem: &M,
    elf: &mut dyn Read,
) -> std::result::Result<(GuestAddress, u64), StreamError> {
    let invalid = |what: &str| StreamError::Invalid(what.to_string());
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at =
        |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
    let u64_at =
        |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
    let mut ehdr = [0u8; EHDR_LEN];
    elf.read_exact(&mut ehdr)?;
    if ehdr[..4] != ELF_MAGIC || ehdr[4] != 2 || ehdr[5] != 1 || u16_at(&ehdr, 18) != EM_X86_64 {
        return Err(invalid("not a little-endian x86-64 ELF64 file"));
    }
    let entry = u64_at(&ehdr, 24);
    let phoff = u64_at(&ehdr, 32);
    let (phentsize, phnum) = (
        usize::from(u16_at(&ehdr, 54)),
        usize::from(u16_at(&ehdr, 56)),
    );
    if phentsize != PHDR_LEN || phnum == 0 || phnum > MAX_PHDRS || phoff < EHDR_LEN as u64 {
        return Err(invalid("unusable program headers"));
    }
    let mut pos = EHDR_LEN as u64;
    skip(elf, phoff - pos)?;
    let mut phdrs = vec![0u8; phnum * PHDR_LEN];
    elf.read_exact(&mut phdrs)?;
    pos = phoff + phdrs.len() as u64;
    // (offset, paddr, filesz, memsz) of each PT_LOAD, in file order.
    let mut loads: Vec<(u64, u64, u64, u64)> = phdrs
        .chunks_exact(PHDR_LEN)
        .filter(|p| u32_at(p, 0) == PT_LOAD)
        .map(|p| (u64_at(p, 8), u64_at(p, 24), u64_at(p, 32), u64_at(p, 40)))
        .collect();
    loads.sort_unstable();
    let mut end = 0;
    let mut buf = vec![0u8; 1 << 20];
    for (offset, paddr, filesz, memsz) in loads {
        let fits = paddr.checked_add(memsz).is_some_and(|e| {
            paddr >= HIMEM_START.0 && mem.check_range(GuestAddress(paddr), memsz as usize) && e > 0
        });
        if offset < pos || filesz > memsz || !fits {
            return Err(invalid(
                "a segment overlaps another or lies outside guest memory",
            ));
        }
        skip(elf, offset - pos)?;
        let mut done = 0;
        while done < filesz {
            let n = (filesz - done).min(buf.len() as u64) as usize;
            elf.read_exact(&mut buf[..n])?;
            mem.write_slice(&buf[..n], GuestAddress(paddr + done))
                .map_err(|e| StreamError::Invalid(format!("cannot write guest memory: {e}")))?;
            done += n as u64;
        }
        pos = offset + filesz;
        end = end.max(paddr + memsz);
    }
    if end == 0 {
        return Err(invalid("no loadable segment"));
    }
    Ok((GuestAddress(entry), end))
}

/// Reads and drops `n` bytes of `r`.
fn skip(r: &mut dyn Read, n: u64) -> std::io::Result<()> {
    let skipped = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
    if skipped != n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
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

/// Loads the kernel `image`, and the command line and initrd of `cfg`, into `mem` and writes
/// the zero page. Returns the 64-bit entry point (ELF vmlinux, also the one
/// decompressed from a bzImage: `e_entry`; a bzImage the guest
/// decompresses: load address + 0x200) and the zero page address.
pub fn load_kernel<M: GuestMemoryBackend>(
    mem: &M,
    cfg: &KernelConfig,
    image: KernelImage,
) -> Result<BootInfo> {
    let kernel = load_kernel_image(mem, image)?;

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
        how: kernel.how,
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

    /// A bzImage around `payload` (at payload_offset 0x10 of the
    /// protected-mode code), as the kernel's build packs it.
    fn bzimage_with_payload(payload: &[u8]) -> Vec<u8> {
        let mut img = bzimage(0x020f, XLF_KERNEL_64, 0x10 + payload.len());
        img[0x248..0x24c].copy_from_slice(&0x10u32.to_le_bytes()); // payload_offset
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img[5 * 512 + 0x10..].copy_from_slice(payload);
        img
    }

    /// The kernel build's zstd payload: a frame, then the size (LE32).
    fn zstd_payload(data: &[u8]) -> Vec<u8> {
        let mut p = zstd::bulk::compress(data, 3).unwrap();
        p.extend_from_slice(&(data.len() as u32).to_le_bytes());
        p
    }

    #[test]
    fn decompresses_a_bzimage_and_enters_its_vmlinux() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vmlinux()).unwrap();
        for (format, payload) in [
            ("zstd", zstd_payload(&vmlinux())),
            ("gzip", gz.finish().unwrap()),
        ] {
            let mem = mem();
            let kernel = TempFile::new(format, &bzimage_with_payload(&payload));
            let initrd = TempFile::new("rd", &[0x5a; 5000]);
            let info = load(&mem, &config(&kernel.0, Some(&initrd.0), "quiet")).unwrap();
            assert_eq!(info.how, KernelLoad::Decompressed(format));
            // The vmlinux's own entry, at its physical address.
            assert_eq!(info.entry, GuestAddress(0x100_0000));
            let code: u8 = mem.read_obj(GuestAddress(0x100_0000)).unwrap();
            assert_eq!(code, 0xcc);
            // Nothing of the bzImage at the bzImage load address.
            let low: u8 = mem.read_obj(GuestAddress(0x10_0000)).unwrap();
            assert_eq!(low, 0);
            // The zero page carries the bzImage's header.
            let p: boot_params = mem.read_obj(ZERO_PAGE_START).unwrap();
            let hdr = p.hdr;
            assert_eq!(({ hdr.version }, { hdr.header }), (0x020f, HDRS_MAGIC));
            assert_eq!({ hdr.type_of_loader }, LOADER_UNDEFINED);
            assert_eq!({ hdr.cmdline_size }, 5);
            assert_eq!({ hdr.ramdisk_size }, 5000);
        }
    }

    #[test]
    fn a_corrupt_payload_is_an_error() {
        let mut payload = zstd_payload(&vmlinux());
        payload[8] ^= 0xff;
        let mem = mem();
        let kernel = TempFile::new("badzstd", &bzimage_with_payload(&payload));
        let err = load(&mem, &config(&kernel.0, None, "")).unwrap_err();
        assert!(
            matches!(err, Error::Decompress { format: "zstd", .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("cannot decompress the kernel inside"),
            "{err}"
        );
        // A payload that is no vmlinux.
        let kernel = TempFile::new("notelf", &bzimage_with_payload(&zstd_payload(&[7; 4096])));
        let err = load(&mem, &config(&kernel.0, None, "")).unwrap_err();
        assert!(matches!(err, Error::Vmlinux { .. }), "{err}");
        assert!(
            err.to_string().contains("not a little-endian x86-64 ELF64"),
            "{err}"
        );
    }

    #[test]
    fn the_guest_decompresses_what_the_caller_leaves_to_it() {
        // A zstd payload the host could decode, left to the guest: the
        // bzImage is loaded whole and entered at its 64-bit entry.
        let mem = mem();
        let image = bzimage_with_payload(&zstd_payload(&vmlinux()));
        let kernel = TempFile::new("zstd-guest", &image);
        let (path, cfg) = config(&kernel.0, None, "");
        let info =
            load_kernel(&mem, &cfg, read_kernel(path, Decompressor::Guest).unwrap()).unwrap();
        assert_eq!(info.how, KernelLoad::BzImage(Some("zstd")));
        assert_eq!(info.entry, GuestAddress(0x10_0200));
        // The bzImage's protected-mode part, not its vmlinux, at 1 MiB.
        let setup = 5 * 512; // the boot sector and 4 setup sectors
        let mut loaded = vec![0u8; 64];
        mem.read_slice(&mut loaded, GuestAddress(0x10_0000))
            .unwrap();
        assert_eq!(loaded, image[setup..setup + 64]);
        let code: u8 = mem.read_obj(GuestAddress(0x100_0000)).unwrap();
        assert_ne!(
            code, 0xcc,
            "the vmlinux's first byte is not in guest memory"
        );
    }

    #[test]
    fn other_payloads_boot_through_the_guest_decompressor() {
        // An xz payload: loaded whole, entered at the bzImage's 64-bit entry.
        let mem = mem();
        let kernel = TempFile::new("xz", &bzimage_with_payload(b"\xfd7zXZ\0rest"));
        let info = load(&mem, &config(&kernel.0, None, "")).unwrap();
        assert_eq!(info.how, KernelLoad::BzImage(None));
        assert_eq!(info.entry, GuestAddress(0x10_0200));
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
    ) -> (&'a Path, KernelConfig<'a>) {
        let cfg = KernelConfig {
            initrd,
            cmdline,
            mem_size: MEM,
            rsdp: GuestAddress(0xe0000),
        };
        (kernel, cfg)
    }

    /// Reads and loads the kernel, as `vfvm run` does.
    fn load(mem: &GuestMemoryMmap, (kernel, cfg): &(&Path, KernelConfig)) -> Result<BootInfo> {
        load_kernel(mem, cfg, read_kernel(kernel, Decompressor::Host)?)
    }

    #[test]
    fn boots_bzimage_with_initrd() {
        let mem = mem();
        let kernel = TempFile::new("bz", &bzimage(0x020f, XLF_KERNEL_64, 0x3000));
        let initrd = TempFile::new("initrd", &[0x5a; 5000]);
        let info = load(
            &mem,
            &config(&kernel.0, Some(&initrd.0), "console=ttyS0 reboot=k"),
        )
        .unwrap();
        assert_eq!(info.entry, GuestAddress(0x10_0200));
        assert_eq!(info.how, KernelLoad::BzImage(None));
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
        let info = load(&mem, &config(&kernel.0, None, "")).unwrap();
        assert_eq!(info.entry, GuestAddress(0x100_0000));
        assert_eq!(info.how, KernelLoad::Vmlinux);
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
        let err = load(&mem, &config(&junk.0, None, "")).unwrap_err();
        assert!(matches!(err, Error::NotAKernel(_)));
        assert!(err.to_string().contains(&*junk.0.to_string_lossy()));
        let short = TempFile::new("short", b"ab");
        assert!(matches!(
            load(&mem, &config(&short.0, None, "")).unwrap_err(),
            Error::NotAKernel(_)
        ));
        let missing = Path::new("/nonexistent/vmlinuz");
        let err = load(&mem, &config(missing, None, "")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinuz"));
    }

    #[test]
    fn rejects_bzimage_without_64bit_entry() {
        let mem = mem();
        let old = TempFile::new("old", &bzimage(0x020b, 0, 0x1000));
        assert!(matches!(
            load(&mem, &config(&old.0, None, "")).unwrap_err(),
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
        let err = load(&mem, &config(&kernel.0, None, &long)).unwrap_err();
        assert!(matches!(
            err,
            Error::CmdlineTooLong {
                len: 2048,
                max: 2047
            }
        ));
        let elf = TempFile::new("elflong", &vmlinux());
        let longer = "a".repeat(CMDLINE_MAX_SIZE);
        let err = load(&mem, &config(&elf.0, None, &longer)).unwrap_err();
        assert!(matches!(err, Error::CmdlineTooLong { max: 4095, .. }));
    }

    #[test]
    fn rejects_initrd_too_big() {
        let mem = mem();
        let kernel = TempFile::new("bzbig", &bzimage(0x020f, XLF_KERNEL_64, 0x1000));
        // The kernel needs [1 MiB, 9 MiB) (init_size 8 MiB): 56 MiB are left.
        let big = TempFile::new("bigrd", &vec![0u8; 56 * MIB as usize + 1]);
        let err = load(&mem, &config(&kernel.0, Some(&big.0), "")).unwrap_err();
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
