//! The evaluation protocol's prompt sets (METHODS.md section 5): text files in the
//! repository's `prompts/` folder, embedded in the binary, or a user's own file.
//!
//! File format: UTF-8, one prompt per line; blank lines and lines starting with `#` are skipped
//! (the shipped files start with comments saying which paper / table each list comes from).
//! Every prompt holds the subject exactly once as `{}`, standing for placeholder + class:
//! `fill("a {} in the jungle", "V* dog")` is `"a V* dog in the jungle"`.

use candle_core::{Error, Result};

/// Where the subject goes in a prompt template.
pub const PLACEHOLDER: &str = "{}";

/// The shipped sets: (name, the text of `prompts/<name>.txt`).
const SHIPPED: &[(&str, &str)] = &[
    ("dreambooth_live", include_str!("../../../prompts/dreambooth_live.txt")),
    ("dreambooth_object", include_str!("../../../prompts/dreambooth_object.txt")),
    ("vico_live", include_str!("../../../prompts/vico_live.txt")),
    ("vico_object", include_str!("../../../prompts/vico_object.txt")),
    ("complex", include_str!("../../../prompts/complex.txt")),
    ("palp_elements", include_str!("../../../prompts/palp_elements.txt")),
];

/// The shipped sets' names.
pub fn names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(n, _)| *n).collect()
}

/// A shipped set by name, or a user's file by path: the prompt templates in file order, each
/// trimmed, blank and `#` lines skipped. Errors, naming the file and what to do, when the file
/// is missing or unreadable, holds no prompts, or has a prompt without exactly one `{}`.
pub fn read(name_or_path: &str) -> Result<Vec<String>> {
    if let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
        return parse(text, &format!("prompts/{name}.txt"), name_or_path);
    }
    match std::fs::read_to_string(name_or_path) {
        Ok(text) => parse(&text, name_or_path, name_or_path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Msg(format!(
            "prompt set '{name_or_path}': no such shipped set or file. Give one of the shipped sets ({}) \
             or a path to a UTF-8 text file with one prompt per line that writes the subject as {PLACEHOLDER}",
            names().join(", "),
        ))),
        Err(e) => Err(Error::Msg(format!(
            "prompt set '{name_or_path}': cannot read it ({e}); it must be a readable UTF-8 text file with \
             one prompt per line"
        ))),
    }
}

/// The prompts of a set's text; `source` names it in errors.
fn parse(text: &str, source: &str, name_or_path: &str) -> Result<Vec<String>> {
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = line.matches(PLACEHOLDER).count();
        if n != 1 {
            let what = if n == 0 { "has no" } else { "has more than one" };
            return Err(Error::Msg(format!(
                "{source}:{}: prompt \"{line}\" {what} {PLACEHOLDER} placeholder; write the subject \
                 (placeholder + class) exactly once as {PLACEHOLDER}, e.g. \"a {PLACEHOLDER} in \
                 the jungle\", or start the line with # to make it a comment",
                i + 1,
            )));
        }
        prompts.push(line.to_string());
    }
    if prompts.is_empty() {
        return Err(Error::Msg(format!(
            "prompt set '{name_or_path}': {source} holds no prompts (only blank or # lines); add one \
             prompt per line with the subject written as {PLACEHOLDER}"
        )));
    }
    Ok(prompts)
}

/// Puts the subject (placeholder + class, e.g. `"V* dog"`) where the template has `{}`.
pub fn fill(template: &str, subject: &str) -> String {
    template.replace(PLACEHOLDER, subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The counts transcribed from the sources (see each file's header comments).
    const COUNTS: &[(&str, usize)] = &[
        ("dreambooth_live", 25),
        ("dreambooth_object", 25),
        ("vico_live", 31),
        ("vico_object", 31),
        ("complex", 10),
        ("palp_elements", 3),
    ];

    /// A fresh file under the system temp folder; removed by the caller.
    fn temp_file(tag: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("vstar_prompt_sets_{}_{tag}.txt", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn shipped_sets_have_the_transcribed_counts() {
        assert_eq!(COUNTS.len(), names().len());
        for &(name, n) in COUNTS {
            assert!(names().contains(&name), "{name} missing from SHIPPED");
            let prompts = read(name).unwrap();
            assert_eq!(prompts.len(), n, "{name}");
        }
    }

    #[test]
    fn shipped_lines_hold_exactly_one_placeholder_and_files_start_with_a_source_comment() {
        for (name, text) in SHIPPED {
            assert!(text.starts_with('#'), "{name}: first line should say where the list comes from");
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                assert_eq!(line.matches("{}").count(), 1, "{name}: {line}");
                assert_eq!(line.matches(['{', '}']).count(), 2, "{name}: stray brace in {line}");
            }
        }
    }

    #[test]
    fn vico_lists_extend_the_first_24_dreambooth_prompts() {
        for (vico, db) in [("vico_live", "dreambooth_live"), ("vico_object", "dreambooth_object")] {
            let (v, d) = (read(vico).unwrap(), read(db).unwrap());
            assert_eq!(v[..24], d[..24], "{vico} vs {db}");
            assert_eq!(d[24], "a cube shaped {}");
        }
    }

    #[test]
    fn fill_puts_the_subject_in() {
        assert_eq!(fill("a {} in the jungle", "V* dog"), "a V* dog in the jungle");
        assert_eq!(fill("a red {}", "sks backpack"), "a red sks backpack");
        let first = &read("dreambooth_live").unwrap()[0];
        assert_eq!(fill(first, "V* dog"), "a V* dog in the jungle");
    }

    #[test]
    fn reads_a_user_file_by_path_skipping_comments_and_blanks() {
        let path = temp_file(
            "ok",
            "\u{feff}# my prompts\n\n  a {} on the moon  \r\n   # indented comment\na watercolor of a {}\n",
        );
        let prompts = read(path.to_str().unwrap());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(prompts.unwrap(), vec!["a {} on the moon", "a watercolor of a {}"]);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("vstar_prompt_sets_{}_absent.txt", std::process::id()));
        let err = read(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("no such shipped set or file") && err.contains("dreambooth_live"), "{err}");
        // an unknown bare name: same error, pointing at the known sets
        let err = read("no_such_set").unwrap_err().to_string();
        assert!(err.contains("no_such_set") && err.contains("vico_object"), "{err}");
    }

    #[test]
    fn a_line_without_the_placeholder_is_an_error_naming_file_and_line() {
        let path = temp_file("noplace", "# header\na {} in the snow\na dog in the snow\n");
        let err = read(path.to_str().unwrap()).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains(&format!("{}:3", path.display())), "{err}");
        assert!(err.contains("a dog in the snow") && err.contains("has no {}"), "{err}");
    }

    #[test]
    fn two_placeholders_and_empty_files_are_errors() {
        let path = temp_file("twice", "a {} next to a {}\n");
        let err = read(path.to_str().unwrap()).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("more than one"), "{err}");

        let path = temp_file("empty", "# only a comment\n\n   \n");
        let err = read(path.to_str().unwrap()).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains(&path.display().to_string()) && err.contains("no prompts"), "{err}");
    }
}
