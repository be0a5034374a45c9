//! Just enough of tar to read the first entry of `podman cp CONTAINER:PATH -`: its type, mode
//! and content. A dependency would be more than this file.

/// The entry `podman cp` streams first: the path asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// `-`, `d`, `l`, …, as `ls -l` shows it.
    pub kind: char,
    pub mode: u32,
    pub content: Vec<u8>,
}

impl Entry {
    /// `-rwxr-xr-x`.
    pub fn mode_string(&self) -> String {
        let mut s = String::with_capacity(10);
        s.push(self.kind);
        for (i, shift) in [6u32, 3, 0].into_iter().enumerate() {
            let bits = (self.mode >> shift) & 7;
            s.push(if bits & 4 != 0 { 'r' } else { '-' });
            s.push(if bits & 2 != 0 { 'w' } else { '-' });
            let special = match i {
                0 => self.mode & 0o4000 != 0,
                1 => self.mode & 0o2000 != 0,
                _ => self.mode & 0o1000 != 0,
            };
            let exec = bits & 1 != 0;
            s.push(match (special, exec, i) {
                (false, true, _) => 'x',
                (false, false, _) => '-',
                (true, true, 2) => 't',
                (true, false, 2) => 'T',
                (true, true, _) => 's',
                (true, false, _) => 'S',
            });
        }
        s
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The first real entry, skipping long-name and pax headers.
pub fn first_entry(data: &[u8]) -> Option<Entry> {
    let mut at = 0;
    while at + 512 <= data.len() {
        let h = &data[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            return None;
        }
        let size = octal(&h[124..136])? as usize;
        let body = at + 512;
        let next = body + size.div_ceil(512) * 512;
        let kind = match h[156] {
            b'L' | b'K' | b'x' | b'g' => {
                at = next;
                continue;
            }
            b'0' | 0 | b'7' => '-',
            b'1' => '-',
            b'2' => 'l',
            b'3' => 'c',
            b'4' => 'b',
            b'5' => 'd',
            b'6' => 'p',
            _ => '?',
        };
        let mode = octal(&h[100..108])? as u32 & 0o7777;
        let content = data.get(body..body + size).unwrap_or(&[]).to_vec();
        return Some(Entry {
            kind,
            mode,
            content,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, mode: u32, size: usize) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let m = format!("{mode:07o}\0");
        h[100..108].copy_from_slice(m.as_bytes());
        let s = format!("{size:011o}\0");
        h[124..136].copy_from_slice(s.as_bytes());
        h[156] = kind;
        h
    }

    #[test]
    fn reads_the_first_file() {
        let mut t = header("pax", b'x', 0o644, 20);
        t.extend(vec![b'p'; 512]);
        t.extend(header("app/manage.py", b'0', 0o755, 5));
        let mut body = b"hello".to_vec();
        body.resize(512, 0);
        t.extend(body);
        t.extend(vec![0u8; 1024]);
        let e = first_entry(&t).unwrap();
        assert_eq!(e.content, b"hello");
        assert_eq!(e.mode_string(), "-rwxr-xr-x");
        assert_eq!(first_entry(&[0u8; 1024]), None);
    }

    #[test]
    fn mode_strings() {
        let e = |kind, mode| Entry {
            kind,
            mode,
            content: vec![],
        };
        assert_eq!(e('d', 0o755).mode_string(), "drwxr-xr-x");
        assert_eq!(e('-', 0o4755).mode_string(), "-rwsr-xr-x");
        assert_eq!(e('d', 0o1777).mode_string(), "drwxrwxrwt");
        assert_eq!(e('-', 0o640).mode_string(), "-rw-r-----");
    }
}
