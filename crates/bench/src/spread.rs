//! [`Spread`]: a median over the repetitions with its smallest and largest,
//! and how the report prints one. A figure that could not be measured (no
//! repetition produced one) is said in words, and is `null` in `--json`.

use serde::{Serialize, Serializer};

/// A median with the smallest and largest of the repetitions.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of the measured `values`; NaN values (not measured) are
    /// left out, and none at all makes a spread that is not measured.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Self {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }

    /// Whether any repetition produced the figure.
    pub fn is_measured(&self) -> bool {
        self.median.is_finite()
    }
}

/// `{"median": .., "min": .., "max": ..}`, or `null` when not measured.
impl Serialize for Spread {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        if !self.is_measured() {
            return serializer.serialize_none();
        }
        let mut out = serializer.serialize_struct("Spread", 3)?;
        out.serialize_field("median", &self.median)?;
        out.serialize_field("min", &self.min)?;
        out.serialize_field("max", &self.max)?;
        out.end()
    }
}

/// `median (min-max)`, with `digits` decimals; `not measured` in words when
/// no repetition produced the figure.
pub fn spread(s: &Spread, digits: usize) -> String {
    if !s.is_measured() {
        return NOT_MEASURED.to_owned();
    }
    format!("{:.d$} ({:.d$}-{:.d$})", s.median, s.min, s.max, d = digits)
}

/// One figure with no decimals and its `unit`, or `not measured` in words.
pub fn figure(value: f64, unit: &str) -> String {
    if !value.is_finite() {
        return NOT_MEASURED.to_owned();
    }
    format!("{value:.0}{unit}")
}

/// What the report prints in place of a figure it could not measure.
pub const NOT_MEASURED: &str = "not measured";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_no_repetition_produced_is_said_in_words_and_null_in_json() {
        let missing = Spread::of([f64::NAN, f64::NAN]);
        assert_eq!(spread(&missing, 0), "not measured");
        assert_eq!(serde_json::to_string(&missing).unwrap(), "null");
        let some = Spread::of([3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!(spread(&some, 0), "2 (1-3)");
        assert_eq!(
            serde_json::to_string(&some).unwrap(),
            r#"{"median":2.0,"min":1.0,"max":3.0}"#
        );
    }
}
