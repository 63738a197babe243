//! "Did you mean" for unknown keys: toml's error lists the keys allowed where the unknown one was found; the
//! closest of them is suggested.

/// For a toml error message `unknown field `X`, expected one of `A`, `B`` (or `expected `A``), the allowed key
/// closest to `X`: equal ignoring case (the Go manager's TOML reader ignores case), or at most a third of its
/// length in edits (at least 1, at most 3).
pub fn suggestion(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (unknown, allowed) = rest.split_once('`')?;
    let candidates: Vec<&str> = allowed.split('`').skip(1).step_by(2).collect();
    if let Some(same) = candidates.iter().find(|c| c.eq_ignore_ascii_case(unknown)) {
        return Some((*same).to_owned());
    }
    let limit = (unknown.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(&unknown.to_ascii_lowercase(), &c.to_ascii_lowercase()), *c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c.to_owned())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_allowed_key_is_suggested() {
        let message = "unknown field `Drvier`, expected one of `Driver`, `RocksDB`, `Redis`, `Plugin`";
        assert_eq!(suggestion(message).as_deref(), Some("Driver"));
        assert_eq!(
            suggestion("unknown field `readonly`, expected one of `Name`, `ReadOnly`").as_deref(),
            Some("ReadOnly")
        );
        assert_eq!(suggestion("unknown field `Listen`, expected `Listen2`").as_deref(), Some("Listen2"));
        assert_eq!(suggestion("unknown field `Completely`, expected one of `Name`, `Path`"), None);
        assert_eq!(suggestion("invalid type: string"), None);
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
