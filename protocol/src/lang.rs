//! The language of human-readable messages: Spanish by default (as the spec), English on request.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Es,
    En,
}

impl Lang {
    /// Picks the language from an `Accept-Language` header value.
    ///
    /// Honours quality values (`en;q=0.9, es;q=0.8`); the first supported language with the
    /// highest weight wins, and anything unsupported or unparsable falls back to Spanish.
    pub fn from_accept_language(header: &str) -> Self {
        let mut best: Option<(Lang, u16)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or_default().trim();
            let primary = tag.split('-').next().unwrap_or_default();
            let lang = if primary.eq_ignore_ascii_case("en") {
                Lang::En
            } else if primary.eq_ignore_ascii_case("es") {
                Lang::Es
            } else {
                continue;
            };
            let weight = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(1000, parse_quality);
            if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
                best = Some((lang, weight));
            }
        }
        best.map(|(lang, _)| lang).unwrap_or_default()
    }

    /// Chooses between the Spanish and the English text of a message.
    pub fn pick(self, es: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Es => es,
            Lang::En => en,
        }
    }
}

/// Parses an RFC 9110 quality value into thousandths; malformed values count as 0.
fn parse_quality(q: &str) -> u16 {
    match q.trim().parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => (v * 1000.0).round() as u16,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::Lang;

    #[test]
    fn spanish_is_the_default() {
        assert_eq!(Lang::from_accept_language(""), Lang::Es);
        assert_eq!(Lang::from_accept_language("fr-FR, de"), Lang::Es);
        assert_eq!(Lang::from_accept_language("garbage;;;q=zz"), Lang::Es);
    }

    #[test]
    fn english_is_chosen_when_asked_for() {
        assert_eq!(Lang::from_accept_language("en"), Lang::En);
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr, EN-gb;q=0.5"), Lang::En);
    }

    #[test]
    fn quality_values_decide_between_supported_languages() {
        assert_eq!(Lang::from_accept_language("es;q=0.5, en;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept_language("en;q=0.5, es;q=0.8"), Lang::Es);
        assert_eq!(Lang::from_accept_language("en;q=0"), Lang::Es);
    }
}
