//! The HTTP `Range` header (RFC 9110 §14): one byte range per request.

/// What a request's `Range` header asks of a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The whole body (no header, another unit, or several ranges, which
    /// a server may answer with the whole body).
    All,
    /// Bytes `start..end` (end exclusive), a 206.
    Part { start: u64, end: u64 },
    /// A range that cannot be served: 416.
    Unsatisfiable,
}

/// Interprets `header` (the value of `Range`, if any) for `size` bytes.
pub fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Unsatisfiable;
    };
    let number = |s: &str| -> Option<Option<u64>> {
        match s.trim() {
            "" => Some(None),
            n if n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok().map(Some),
            _ => None,
        }
    };
    let (Some(first), Some(last)) = (number(first), number(last)) else {
        return Wanted::Unsatisfiable;
    };
    match (first, last) {
        // bytes=-n: the last n bytes.
        (None, Some(n)) if n > 0 && size > 0 => Wanted::Part {
            start: size.saturating_sub(n),
            end: size,
        },
        (Some(start), last) if start < size && last.is_none_or(|l| l >= start) => Wanted::Part {
            start,
            end: last.map_or(size, |l| l.saturating_add(1).min(size)),
        },
        _ => Wanted::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let part = |start, end| Wanted::Part { start, end };
        assert_eq!(wanted(None, 10), Wanted::All);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-1,4-5"), 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-0"), 10), part(0, 1));
        assert_eq!(wanted(Some("bytes=2-"), 10), part(2, 10));
        assert_eq!(wanted(Some("bytes=5-100"), 10), part(5, 10));
        assert_eq!(wanted(Some("bytes=-3"), 10), part(7, 10));
        assert_eq!(wanted(Some("bytes=-30"), 10), part(0, 10));
        assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=5-2"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=a-b"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
    }
}
