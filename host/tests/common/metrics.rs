//! Reading `/metrics` (Prometheus text format) in tests: the value of one series, or
//! the sum over every series of a metric whose labels include the given ones.

/// One scrape of `/metrics`.
pub struct Scrape(pub String);

impl Scrape {
    /// Every sample of `name`: (labels, value).
    pub fn samples(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, labels) = match series.split_once('{') {
                    Some((metric, rest)) => (metric, parse_labels(rest.strip_suffix('}')?)?),
                    None => (series, Vec::new()),
                };
                (metric == name).then(|| value.parse().ok().map(|v| (labels, v))).flatten()
            })
            .collect()
    }

    /// The sum of `name` over its series whose labels include every one of `labels`
    /// (`None` when no series matches).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples(name)
            .into_iter()
            .filter(|(have, _)| labels.iter().all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v)))
            .map(|(_, value)| value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Like `sum`, 0 when no series matches.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(name, labels).unwrap_or(0.0)
    }
}

/// `k="v",k2="v2"` (values with `\"`, `\\` and `\n` escapes).
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim_start_matches(',').to_string(), value));
        rest = &after[end + 1..];
    }
    Some(labels)
}
