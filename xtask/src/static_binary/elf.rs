//! Just enough of ELF64 to tell a static executable from a dynamic one.

use anyhow::{Context, Result, ensure};

/// How an ELF executable is linked, as far as the loader is concerned.
#[derive(Debug, PartialEq, Eq)]
pub struct ElfLinkage {
    /// The `PT_INTERP` path (e.g. `/lib64/ld-linux-x86-64.so.2`): a dynamic executable.
    pub interpreter: Option<String>,
    /// The `DT_NEEDED` libraries.
    pub needed: Vec<String>,
    /// Whether it has a `PT_DYNAMIC` segment (a static-pie has one, for its self-relocation).
    pub has_dynamic: bool,
}

pub(super) const PT_LOAD: u32 = 1;
pub(super) const PT_DYNAMIC: u32 = 2;
pub(super) const PT_INTERP: u32 = 3;
pub(super) const DT_NULL: u64 = 0;
pub(super) const DT_NEEDED: u64 = 1;
pub(super) const DT_STRTAB: u64 = 5;

impl ElfLinkage {
    /// Reads the program headers and the dynamic section of a little-endian ELF64 file.
    pub fn parse(elf: &[u8]) -> Result<ElfLinkage> {
        ensure!(elf.get(..4) == Some(b"\x7fELF"), "not an ELF file");
        // EI_CLASS 2 (ELF64), EI_DATA 1 (little-endian).
        ensure!(
            elf.get(4..6) == Some(&[2, 1][..]),
            "not a little-endian ELF64 file"
        );
        let phoff = usize_at(elf, 0x20)?;
        let phentsize = u16_at(elf, 0x36)? as usize;
        let phnum = u16_at(elf, 0x38)? as usize;
        ensure!(
            phentsize >= 0x38,
            "program header entries of {phentsize} bytes"
        );
        // (p_type, p_offset, p_vaddr, p_filesz)
        let mut headers = Vec::with_capacity(phnum);
        for i in 0..phnum {
            let h = phoff + i * phentsize;
            headers.push((
                u32_at(elf, h)?,
                usize_at(elf, h + 0x08)?,
                u64_at(elf, h + 0x10)?,
                usize_at(elf, h + 0x20)?,
            ));
        }
        let mut linkage = ElfLinkage {
            interpreter: None,
            needed: Vec::new(),
            has_dynamic: false,
        };
        for &(kind, offset, _, size) in &headers {
            if kind == PT_INTERP {
                let path = slice(elf, offset, size)?;
                let path = path.split(|&b| b == 0).next().unwrap_or_default();
                linkage.interpreter = Some(String::from_utf8_lossy(path).into_owned());
            }
        }
        let Some(&(_, dyn_offset, _, dyn_size)) = headers.iter().find(|h| h.0 == PT_DYNAMIC) else {
            return Ok(linkage);
        };
        linkage.has_dynamic = true;
        let mut needed_offsets = Vec::new();
        let mut strtab = None;
        for entry in slice(elf, dyn_offset, dyn_size)?.chunks_exact(16) {
            let tag = u64::from_le_bytes(entry[..8].try_into().unwrap());
            let value = u64::from_le_bytes(entry[8..].try_into().unwrap());
            match tag {
                DT_NULL => break,
                DT_NEEDED => needed_offsets.push(value),
                DT_STRTAB => strtab = Some(value),
                _ => {}
            }
        }
        if needed_offsets.is_empty() {
            return Ok(linkage);
        }
        // DT_STRTAB is an address: find the file offset through the PT_LOAD segment holding it.
        let strtab = strtab.context("DT_NEEDED without DT_STRTAB")?;
        let strtab = headers
            .iter()
            .filter(|h| h.0 == PT_LOAD)
            .find(|&&(_, _, vaddr, filesz)| strtab >= vaddr && strtab - vaddr < filesz as u64)
            .map(|&(_, offset, vaddr, _)| offset + (strtab - vaddr) as usize)
            .context("DT_STRTAB outside every PT_LOAD segment")?;
        for name in needed_offsets {
            let start = strtab + name as usize;
            let rest = elf.get(start..).context("DT_NEEDED name past the end")?;
            let name = rest.split(|&b| b == 0).next().unwrap_or_default();
            linkage
                .needed
                .push(String::from_utf8_lossy(name).into_owned());
        }
        Ok(linkage)
    }

    /// Static: the kernel runs it without a loader and it asks for no shared library.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        match (&self.interpreter, self.is_static()) {
            (_, true) if self.has_dynamic => {
                "yes (static-pie: no PT_INTERP, no DT_NEEDED)".to_string()
            }
            (_, true) => "yes (no PT_INTERP, no PT_DYNAMIC)".to_string(),
            (Some(interp), false) => format!(
                "NO: interpreter {interp}, needs [{}]",
                self.needed.join(", ")
            ),
            (None, false) => format!("NO: needs [{}]", self.needed.join(", ")),
        }
    }
}

fn slice(elf: &[u8], offset: usize, size: usize) -> Result<&[u8]> {
    offset
        .checked_add(size)
        .and_then(|end| elf.get(offset..end))
        .with_context(|| format!("{size} bytes at {offset:#x} run past the end of the file"))
}

fn u16_at(elf: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(slice(elf, at, 2)?.try_into().unwrap()))
}

fn u32_at(elf: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(slice(elf, at, 4)?.try_into().unwrap()))
}

fn u64_at(elf: &[u8], at: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(slice(elf, at, 8)?.try_into().unwrap()))
}

fn usize_at(elf: &[u8], at: usize) -> Result<usize> {
    usize::try_from(u64_at(elf, at)?).context("offset does not fit in usize")
}
