//! Comparing the versions programs report (`0.3.1`, `0.4.0-rc1`, `0.4.0+git.abc`): the
//! orchestrator marks drones older than itself (`build-swarm drones --outdated`).

/// `(numeric components, has a pre-release part)`, or `None` when there is no number.
fn parse(v: &str) -> Option<(Vec<u64>, bool)> {
    let v = v.trim().trim_start_matches('v');
    let core_end = v.find(['-', '+', ' ']).unwrap_or(v.len());
    let (core, rest) = v.split_at(core_end);
    let nums: Option<Vec<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    let nums = nums.filter(|n| !n.is_empty())?;
    Some((nums, rest.starts_with('-')))
}

/// Whether `version` is older than `reference` (semantic-version order: numbers first,
/// a pre-release before its release). A version that is not one (empty, no number) is
/// counted as older: a drone that reports none predates the field.
pub fn older_than(version: &str, reference: &str) -> bool {
    let Some((theirs, pre)) = parse(version) else {
        return true;
    };
    let Some((ours, our_pre)) = parse(reference) else {
        return false;
    };
    let n = theirs.len().max(ours.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    for i in 0..n {
        match at(&theirs, i).cmp(&at(&ours, i)) {
            std::cmp::Ordering::Less => return true,
            std::cmp::Ordering::Greater => return false,
            std::cmp::Ordering::Equal => {}
        }
    }
    pre && !our_pre
}

#[cfg(test)]
mod tests {
    use super::older_than;

    #[test]
    fn versions_compare_as_semantic_versions() {
        for (a, b) in [
            ("0.1.0", "0.2.0"),
            ("0.9.9", "0.10.0"),
            ("1.2", "1.2.1"),
            ("0.2.0-rc1", "0.2.0"),
            ("", "0.1.0"),
            ("unknown", "0.1.0"),
        ] {
            assert!(older_than(a, b), "{a} < {b}");
        }
        for (a, b) in [
            ("0.2.0", "0.2.0"),
            ("0.2.0", "0.1.9"),
            ("v0.2.0", "0.2.0"),
            ("0.2.0+git.abc", "0.2.0"),
            ("0.2.0", "0.2.0-rc1"),
            ("1.0.0", "1"),
        ] {
            assert!(!older_than(a, b), "{a} is not older than {b}");
        }
    }
}
