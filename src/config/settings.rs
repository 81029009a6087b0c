//! The macro that declares each group of settings once (its settings, flags and TOML section).

/// Declares one group of settings from one list, so a setting is written once: `$Settings` (every
/// setting with its default), `$Args` (the same settings, each optional: the flags and the shape of
/// the group's section in a partial TOML file) and `$Settings::apply`. A field `name: T = default` is
/// a `T` in `$Settings`; a field `name: Option<T>` stays unset (`None`) unless given. The bracket
/// holds the field's extra `#[arg]` options (`value_enum` for enums), or `skip` for a setting that
/// is no flag of its own.
macro_rules! settings {
    // Every field normalised: emit the two structs and the overlay.
    (@emit [$(#[doc = $sdoc:literal])*] $settings:ident $args:ident
     $( { [$(#[doc = $doc:literal])*] [$($arg:tt)*] $field:ident [$cfg_ty:ty] [$arg_ty:ty] [$default:expr] [$wrap:expr] } )*) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $settings {
            $( $(#[doc = $doc])* pub $field: $cfg_ty, )*
        }

        impl Default for $settings {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        $(#[doc = $sdoc])*
        /// Each optional: the flags, and the shape of the group's section in a partial TOML file.
        #[derive(Clone, Debug, Default, Serialize, Deserialize)]
        #[cfg_attr(feature = "cli", derive(clap::Args))]
        #[serde(deny_unknown_fields)]
        pub struct $args {
            $( $(#[doc = $doc])* #[cfg_attr(feature = "cli", arg($($arg)*))] pub $field: Option<$arg_ty>, )*
        }

        impl $settings {
            /// Overwrites every field that `args` sets.
            pub fn apply(&mut self, args: $args) {
                $( if let Some(v) = args.$field { self.$field = $wrap(v); } )*
            }
        }

        impl $args {
            /// The defaults with the fields these flags set overwritten.
            pub fn resolve(self) -> $settings {
                let mut settings = $settings::default();
                settings.apply(self);
                settings
            }
        }
    };
    // A field with a default that is no flag of its own (`[skip]`): set by the caller or the file.
    (@parse $head:tt [$($done:tt)*] $(#[doc = $doc:literal])* [skip] $field:ident : $ty:ty = $default:expr, $($rest:tt)*) => {
        settings!(@parse $head [$($done)* { [$(#[doc = $doc])*] [skip] $field [$ty] [$ty] [$default] [std::convert::identity] }] $($rest)*);
    };
    // An optional field: unset by default.
    (@parse $head:tt [$($done:tt)*] $(#[doc = $doc:literal])* [$($arg:tt)*] $field:ident : Option<$ty:ty>, $($rest:tt)*) => {
        settings!(@parse $head [$($done)* { [$(#[doc = $doc])*] [long, $($arg)*] $field [Option<$ty>] [$ty] [None] [Some] }] $($rest)*);
    };
    // A field with a default, shown in its help.
    (@parse $head:tt [$($done:tt)*] $(#[doc = $doc:literal])* [$($arg:tt)*] $field:ident : $ty:ty = $default:expr, $($rest:tt)*) => {
        settings!(@parse $head [$($done)* {
            [$(#[doc = $doc])*]
            [long, help = $crate::config::settings::help_with_default(concat!($($doc),*), &{ let d: $ty = $default; d }), $($arg)*]
            $field [$ty] [$ty] [$default] [std::convert::identity]
        }] $($rest)*);
    };
    (@parse [$($head:tt)*] [$($done:tt)*]) => {
        settings!(@emit $($head)* $($done)*);
    };
    ($(#[doc = $sdoc:literal])* $settings:ident, $args:ident { $($fields:tt)* }) => {
        settings!(@parse [[$(#[doc = $sdoc])*] $settings $args] [] $($fields)*);
    };
}

/// A flag's help: its doc comment (lines joined) and `[default: …]`, the default as the TOML file
/// spells it. The flags are optional (unset ones leave the file's value), so clap cannot show it.
#[cfg(feature = "cli")]
pub(super) fn help_with_default<T: serde::Serialize>(doc: &str, default: &T) -> String {
    let shown = match serde_json::to_value(default).expect("a setting serialises") {
        serde_json::Value::String(s) => s,
        v => v.to_string(),
    };
    format!("{} [default: {shown}]", doc.trim().trim_end_matches('.'))
}
