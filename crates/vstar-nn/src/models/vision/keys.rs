//! One section of a transformers JSON file (config.json, preprocessor_config.json) with the
//! class defaults filled in: typed getters whose errors name the file and the key, so every
//! refusal says what to fix.

use candle_core::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Reads a JSON object; `hint` says what the file should be when it is missing.
pub fn read_object(path: &Path, hint: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Msg(format!("{}: cannot read ({e}); {hint}", path.display())))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| Error::Msg(format!("{}: invalid JSON ({e})", path.display())))?;
    if !v.is_object() {
        return Err(Error::Msg(format!("{}: expected a JSON object", path.display())));
    }
    Ok(v)
}

pub struct Keys {
    map: Map<String, Value>,
    file: String,
    /// "vision_config." for a nested section, "" at the top level: prefixed to key names.
    section: String,
}

impl Keys {
    /// `given` (an object; anything else counts as empty) over `defaults` (a JSON object literal).
    pub fn new(defaults: &str, given: &Value, file: &Path, section: &str) -> Result<Self> {
        let mut map: Map<String, Value> =
            serde_json::from_str(defaults).map_err(|e| Error::Msg(format!("bad built-in defaults ({e})")))?;
        if let Some(g) = given.as_object() {
            map.extend(g.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(Self { map, file: file.display().to_string(), section: section.to_string() })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn typed<'a, T>(&'a self, key: &str, what: &str, f: impl Fn(&'a Value) -> Option<T>) -> Result<T> {
        match self.get(key) {
            None => Err(Error::Msg(format!("{}: config key `{}{key}` is missing", self.file, self.section))),
            Some(v) => f(v).ok_or_else(|| self.refuse(key, &format!("expected {what}"))),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.typed(key, "a non-negative integer", |v| v.as_u64().map(|n| n as usize))
    }

    pub fn i64(&self, key: &str) -> Result<i64> {
        self.typed(key, "an integer", Value::as_i64)
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.typed(key, "a number", Value::as_f64)
    }

    pub fn bool(&self, key: &str) -> Result<bool> {
        self.typed(key, "true or false", Value::as_bool)
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.typed(key, "a string", Value::as_str)
    }

    /// "<file>: config key `k` = <value> is not supported by vstar (<why>)".
    pub fn refuse(&self, key: &str, why: &str) -> Error {
        let value = self.map.get(key).map(Value::to_string).unwrap_or_else(|| "(absent)".into());
        Error::Msg(format!(
            "{}: config key `{}{key}` = {value} is not supported by vstar ({why})",
            self.file, self.section
        ))
    }
}
