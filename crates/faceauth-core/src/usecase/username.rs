//! Usernames: which are accepted, how they are stored, and which two are "the same
//! name to the eye" (issue 11, defect 7; issue 22, item 12).

use unicode_normalization::UnicodeNormalization;

use super::UseCaseError;
pub use crate::store::skeleton;

/// Longest accepted username, in bytes.
pub const MAX_USERNAME_BYTES: usize = 128;

/// Checks a username and returns it as stored: surrounding whitespace removed, in
/// Unicode NFC, so that one name typed two ways (a precomposed or a combining accent)
/// is one account. Refused, so that two names that look alike cannot both exist or
/// reach one account: control characters, U+FFFD (what invalid UTF-8 in the request,
/// `Jos%E9`, decodes to), and every Default_Ignorable_Code_Point: the invisible
/// format characters of category Cf (zero-width spaces and joiners, bidi overrides,
/// BOM, soft hyphen) and the invisible ones of other categories (U+034F combining
/// grapheme joiner, variation selectors, Hangul fillers).
///
/// Look-alike names of different characters (Cyrillic `а` for Latin `a`, full-width
/// `ａｌｉｃｅ`) are valid here; [`skeleton`] makes them collide at enrollment.
pub fn validate_username(raw: &str) -> Result<String, UseCaseError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(UseCaseError::EmptyUsername);
    }
    let refused = |c: char| c.is_control() || c == char::REPLACEMENT_CHARACTER || is_default_ignorable(c);
    if name.chars().any(refused) {
        return Err(UseCaseError::InvalidUsername);
    }
    let name: String = name.nfc().collect();
    if name.len() > MAX_USERNAME_BYTES {
        return Err(UseCaseError::InvalidUsername);
    }
    Ok(name)
}

/// Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt,
/// Unicode 16.0.0): code points that render as nothing where unsupported. The
/// ranges as the file lists them (reserved ones included: they may be assigned
/// invisible characters later).
pub fn is_default_ignorable(c: char) -> bool {
    const DEFAULT_IGNORABLE_CODE_POINT: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),   // Cf SOFT HYPHEN
        (0x034F, 0x034F),   // Mn COMBINING GRAPHEME JOINER
        (0x061C, 0x061C),   // Cf ARABIC LETTER MARK
        (0x115F, 0x1160),   // Lo HANGUL CHOSEONG FILLER, JUNGSEONG FILLER
        (0x17B4, 0x17B5),   // Mn KHMER VOWEL INHERENT AQ, AA
        (0x180B, 0x180F),   // Mn/Cf MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
        (0x200B, 0x200F),   // Cf ZERO WIDTH SPACE .. RIGHT-TO-LEFT MARK
        (0x202A, 0x202E),   // Cf LEFT-TO-RIGHT EMBEDDING .. RIGHT-TO-LEFT OVERRIDE
        (0x2060, 0x206F),   // Cf/Cn WORD JOINER .. NOMINAL DIGIT SHAPES
        (0x3164, 0x3164),   // Lo HANGUL FILLER
        (0xFE00, 0xFE0F),   // Mn VARIATION SELECTOR-1..16
        (0xFEFF, 0xFEFF),   // Cf ZERO WIDTH NO-BREAK SPACE (BOM)
        (0xFFA0, 0xFFA0),   // Lo HALFWIDTH HANGUL FILLER
        (0xFFF0, 0xFFF8),   // Cn reserved
        (0x1BCA0, 0x1BCA3), // Cf SHORTHAND FORMAT LETTER OVERLAP .. UP STEP
        (0x1D173, 0x1D17A), // Cf MUSICAL SYMBOL BEGIN BEAM .. END PHRASE
        (0xE0000, 0xE0FFF), // Cf/Cn/Mn TAGS, VARIATION SELECTOR-17..256, reserved
    ];
    let c = u32::from(c);
    DEFAULT_IGNORABLE_CODE_POINT.iter().any(|&(first, last)| (first..=last).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_and_checked() {
        assert_eq!(validate_username("  alice ").ok().as_deref(), Some("alice"));
        assert!(matches!(validate_username("   "), Err(UseCaseError::EmptyUsername)));
        assert!(matches!(validate_username("a\u{0}b"), Err(UseCaseError::InvalidUsername)));
        assert!(matches!(validate_username(&"x".repeat(129)), Err(UseCaseError::InvalidUsername)));
        assert!(validate_username("José García-Núñez").is_ok());
    }

    /// Issue 11, defect 7: two different names must not reach one account, and one
    /// name written two ways must.
    #[test]
    fn usernames_are_one_spelling_each() {
        // Invalid UTF-8 in the request arrives as U+FFFD: `Jos%E9` and `Jos%E8` were one account.
        assert!(matches!(validate_username("Jos\u{FFFD}"), Err(UseCaseError::InvalidUsername)));
        // Invisible format characters: zero-width space and joiner, bidi override, BOM, soft hyphen.
        for name in ["ali\u{200B}ce", "ali\u{200D}ce", "\u{202E}ecila", "\u{FEFF}alice", "ali\u{AD}ce"] {
            assert!(matches!(validate_username(name), Err(UseCaseError::InvalidUsername)), "{name:?}");
        }
        // NFC: the decomposed and the precomposed "é" are one name.
        assert_eq!(validate_username("Jose\u{301}").ok().as_deref(), Some("Jos\u{E9}"));
        assert_eq!(validate_username("Jos\u{E9}").ok().as_deref(), Some("Jos\u{E9}"));
    }

    /// Issue 22, item 12: invisible characters outside category Cf made accounts
    /// that look like `alice`.
    #[test]
    fn invisible_characters_of_every_category_are_refused() {
        let invisible = [
            '\u{034F}',  // combining grapheme joiner (Mn)
            '\u{FE00}',  // variation selector 1 (Mn)
            '\u{FE0F}',  // variation selector 16 (Mn)
            '\u{E0100}', // variation selector 17 (Mn)
            '\u{E01EF}', // variation selector 256 (Mn)
            '\u{115F}',  // Hangul choseong filler (Lo)
            '\u{1160}',  // Hangul jungseong filler (Lo)
            '\u{3164}',  // Hangul filler (Lo)
            '\u{FFA0}',  // halfwidth Hangul filler (Lo)
            '\u{180B}',  // Mongolian free variation selector (Mn)
            '\u{17B4}',  // Khmer vowel inherent (Mn)
            '\u{2065}',  // reserved, default ignorable (Cn)
            '\u{E0041}', // tag latin capital A (Cf)
        ];
        for c in invisible {
            for name in [format!("ali{c}ce"), format!("alice{c}"), format!("{c}alice")] {
                assert!(matches!(validate_username(&name), Err(UseCaseError::InvalidUsername)), "U+{:04X}", c as u32);
            }
        }
        // Visible neighbours of the ranges stay valid.
        for name in ["a\u{0350}b", "\u{3165}", "\u{FFA1}", "\u{1161}", "x\u{FE10}"] {
            assert!(validate_username(name).is_ok(), "{name:?}");
        }
    }

    /// Issue 22, item 12: look-alike names share a skeleton; different names do not.
    #[test]
    fn look_alike_names_share_a_skeleton() {
        let alice = skeleton("alice");
        for look_alike in [
            "\u{0430}lice",                             // Cyrillic а
            "\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}", // full-width ａｌｉｃｅ
            "a\u{04CF}ice",                             // Cyrillic palochka for l
            "aIice",                                    // capital I for l
            "\u{1D5BA}lice",                            // mathematical sans-serif a
        ] {
            let valid = validate_username(look_alike).expect("a valid name on its own");
            assert_eq!(skeleton(&valid), alice, "{look_alike:?}");
        }
        for different in ["alicia", "bob", "Alice", "alice2", "al-ice"] {
            assert_ne!(skeleton(different), alice, "{different:?}");
        }
        // One name is its own look-alike, whatever its normal form.
        assert_eq!(skeleton("Jose\u{301}"), skeleton("Jos\u{E9}"));
    }
}
