//! Request ids (`X-Request-Id`): a caller's id is kept when it is safe to log and echo back,
//! otherwise a fresh time-ordered UUID is made — the same rule at central and at the edge.

/// Longest caller-supplied id accepted.
pub const MAX_LEN: usize = 128;

/// Keeps `incoming` when it is 1–128 characters of `[A-Za-z0-9._:-]`, else makes a UUIDv7.
pub fn accept_or_generate(incoming: Option<&str>) -> String {
    match incoming {
        Some(v)
            if !v.is_empty()
                && v.len() <= MAX_LEN
                && v.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
                }) =>
        {
            v.to_owned()
        }
        _ => crate::ids::v7_now().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::accept_or_generate;

    #[test]
    fn plain_incoming_ids_are_kept_and_others_replaced() {
        assert_eq!(accept_or_generate(Some("abc-123")), "abc-123");
        for bad in ["", "has space", "line\nbreak", "quote\"", &"x".repeat(129)] {
            let id = accept_or_generate(Some(bad));
            assert_ne!(id, bad);
            assert!(uuid::Uuid::parse_str(&id).is_ok());
        }
        assert!(uuid::Uuid::parse_str(&accept_or_generate(None)).is_ok());
    }
}
