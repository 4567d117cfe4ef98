//! Server-rendered HTML: one layout, one function per page. Every value that came from
//! outside (config, forms, the LMS's messages) goes through [`esc`].

use std::fmt::Write;

use crate::lms::{OutboxRecord, RecordState};

pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Which page is current (for the navigation bar), and whether there is a session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Status,
    Attendance,
    Queue,
    Diagnostics,
    Public,
}

pub fn layout(title: &str, classroom: &str, nav: Nav, csrf: Option<&str>, body: &str) -> String {
    let link = |href: &str, label: &str, me: Nav| {
        let current = if me == nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{current}>{label}</a>")
    };
    let menu = match csrf {
        Some(csrf) => format!(
            "<nav>{}{}{}{}<form method=\"post\" action=\"/logout\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"link\">Log out</button></form></nav>",
            link("/", "Status", Nav::Status),
            link("/attendance", "Attendance", Nav::Attendance),
            link("/queue", "Sync queue", Nav::Queue),
            link("/diagnostics", "Diagnostics", Nav::Diagnostics),
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · classbox</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body><header><h1>classbox · {}</h1>{menu}</header><main>{body}</main>\
         <footer>classbox {}</footer></body></html>",
        esc(title),
        esc(classroom),
        env!("CARGO_PKG_VERSION")
    )
}

/// A form field with its label, hint and (if the last submission was refused) error.
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub hint: &'a str,
    pub error: Option<&'a str>,
}

impl Field<'_> {
    pub fn render(&self) -> String {
        let error = self
            .error
            .map(|e| {
                format!(
                    "<p class=\"error\" id=\"{}-error\">{}</p>",
                    self.name,
                    esc(e)
                )
            })
            .unwrap_or_default();
        let value = if self.kind == "password" {
            String::new()
        } else {
            esc(self.value)
        };
        format!(
            "<label for=\"{n}\">{l}</label><input type=\"{k}\" id=\"{n}\" name=\"{n}\" value=\"{value}\"{invalid}>{error}{hint}",
            n = self.name,
            l = esc(self.label),
            k = self.kind,
            invalid = if self.error.is_some() {
                " aria-invalid=\"true\""
            } else {
                ""
            },
            hint = if self.hint.is_empty() {
                String::new()
            } else {
                format!("<p class=\"hint\">{}</p>", esc(self.hint))
            },
        )
    }
}

pub fn select(
    name: &str,
    label: &str,
    options: &[(&str, &str)],
    chosen: &str,
    hint: &str,
) -> String {
    let mut html = format!(
        "<label for=\"{name}\">{}</label><select id=\"{name}\" name=\"{name}\">",
        esc(label)
    );
    for (value, text) in options {
        let sel = if *value == chosen { " selected" } else { "" };
        let _ = write!(
            html,
            "<option value=\"{}\"{sel}>{}</option>",
            esc(value),
            esc(text)
        );
    }
    html.push_str("</select>");
    if !hint.is_empty() {
        let _ = write!(html, "<p class=\"hint\">{}</p>", esc(hint));
    }
    html
}

pub fn flash(message: Option<&str>, ok: bool) -> String {
    message
        .map(|m| {
            format!(
                "<div class=\"flash {}\" role=\"status\">{}</div>",
                if ok { "ok" } else { "bad" },
                esc(m)
            )
        })
        .unwrap_or_default()
}

pub fn queue_table(records: &[OutboxRecord], state: RecordState, csrf: &str) -> String {
    if records.is_empty() {
        return "<p class=\"panel\">Nothing here.</p>".into();
    }
    let mut html = String::from(
        "<table><thead><tr><th>Recorded</th><th>What</th><th>For</th><th>Attempts</th><th>Server's message</th><th></th></tr></thead><tbody>",
    );
    for r in records {
        let retry = if state == RecordState::Dead {
            format!(
                "<form method=\"post\" action=\"/queue/retry\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"record_id\" value=\"{}\"><button>Retry</button></form>",
                esc(csrf),
                esc(&r.record_id)
            )
        } else {
            String::new()
        };
        let when = crate::lms::xapi::rfc3339(r.created_at_ms).replace('T', " ");
        let _ = write!(
            html,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"msg\">{}</td><td>{retry}</td></tr>",
            esc(&when[..16.min(when.len())]),
            if r.clock_suspect {
                " <span title=\"the box's clock looked wrong\">⚠</span>"
            } else {
                ""
            },
            esc(&r.kind),
            esc(&r.entity),
            r.attempts,
            esc(r.last_error.as_deref().unwrap_or(""))
        );
    }
    html.push_str("</tbody></table>");
    html
}
