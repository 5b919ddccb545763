//! SORT's option grammar, shared by the server (which runs SORT) and the proxy (which
//! routes it by the keys the options name), so the two always read a request alike.

/// SORT's options as Redis 7 parses them (`sortCommandGeneric`), as argument indices.
/// Parsing stops at the first argument Redis rejects with a syntax error.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SortArgs {
    /// `DESC` (the last of ASC/DESC wins).
    pub desc: bool,
    /// `ALPHA`.
    pub alpha: bool,
    /// Index of the offset of every `LIMIT offset count`, in order (the count follows it):
    /// Redis checks each as it goes and keeps the last.
    pub limits: Vec<usize>,
    /// Index of the last `BY` pattern.
    pub by: Option<usize>,
    /// A `BY` pattern without `*` was given: no sorting (it stays set whatever follows).
    pub dontsort: bool,
    /// Indices of the `GET` patterns, in order.
    pub gets: Vec<usize>,
    /// Index of the last `STORE` destination (SORT only).
    pub store: Option<usize>,
    /// Index of the argument Redis answers `ERR syntax error` for.
    pub syntax_error: Option<usize>,
}

impl SortArgs {
    /// Parses the options from argument 2 on; `store_allowed` is false for SORT_RO.
    pub fn parse<'a>(argc: usize, arg: impl Fn(usize) -> &'a [u8], store_allowed: bool) -> Self {
        let mut o = SortArgs::default();
        let mut j = 2;
        while j < argc {
            let a = arg(j);
            let left = argc - j - 1;
            let is = |w: &[u8]| a.eq_ignore_ascii_case(w);
            if is(b"asc") {
                o.desc = false;
            } else if is(b"desc") {
                o.desc = true;
            } else if is(b"alpha") {
                o.alpha = true;
            } else if is(b"limit") && left >= 2 {
                o.limits.push(j + 1);
                j += 2;
            } else if store_allowed && is(b"store") && left >= 1 {
                o.store = Some(j + 1);
                j += 1;
            } else if is(b"by") && left >= 1 {
                o.by = Some(j + 1);
                o.dontsort |= !arg(j + 1).contains(&b'*');
                j += 1;
            } else if is(b"get") && left >= 1 {
                o.gets.push(j + 1);
                j += 1;
            } else {
                o.syntax_error = Some(j);
                break;
            }
            j += 1;
        }
        o
    }

    /// Indices of the patterns that make the server read other keys: the `BY` pattern
    /// when sorting by it, and every `GET` pattern with a `*` (`GET #` returns the
    /// element itself; a pattern without `*` reads nothing).
    pub fn key_patterns<'a>(&self, arg: impl Fn(usize) -> &'a [u8]) -> Vec<usize> {
        let by = self.by.filter(|_| !self.dontsort);
        by.into_iter()
            .chain(self.gets.iter().copied())
            .filter(|&i| arg(i).contains(&b'*'))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], store: bool) -> SortArgs {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        SortArgs::parse(a.len(), |i| a[i], store)
    }

    #[test]
    fn follows_redis_parsing() {
        let args = [
            "SORT", "l", "BY", "w_*", "LIMIT", "0", "5", "GET", "#", "GET", "o_*", "ALPHA",
            "STORE", "d", "DESC",
        ];
        let o = parse(&args, true);
        assert_eq!(
            o,
            SortArgs {
                desc: true,
                alpha: true,
                limits: vec![5],
                by: Some(3),
                dontsort: false,
                gets: vec![8, 10],
                store: Some(13),
                syntax_error: None,
            }
        );
        assert_eq!(o.key_patterns(|i| args[i].as_bytes()), vec![3, 10]);
        // A pattern spelled like a keyword is an argument, not an option.
        let o = parse(&["SORT", "l", "GET", "store", "STORE", "d"], true);
        assert_eq!((o.gets, o.store), (vec![3], Some(5)));
        // SORT_RO has no STORE; LIMIT needs two arguments.
        assert_eq!(
            parse(&["SORT_RO", "l", "STORE", "d"], false).syntax_error,
            Some(2)
        );
        assert_eq!(
            parse(&["SORT", "l", "LIMIT", "0"], true).syntax_error,
            Some(2)
        );
        // A BY without '*' turns sorting off for good, and its patterns read nothing.
        let args = ["SORT", "l", "BY", "nosort", "BY", "w_*", "GET", "fixed"];
        let o = parse(&args, true);
        assert!(o.dontsort);
        assert_eq!(o.by, Some(5));
        assert!(o.key_patterns(|i| args[i].as_bytes()).is_empty());
    }
}
