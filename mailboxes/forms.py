from __future__ import annotations

from typing import Any

from django import forms

from .models import Mailbox, Provider, Security

PLATFORMS = [(Provider.GOOGLE.value, "Google"), (Provider.MICROSOFT.value, "Microsoft"),
             (Provider.IMAP.value, "IMAP/SMTP")]
IMAP_REQUIRED = ("imap_host", "imap_port", "smtp_host", "smtp_port", "password")


class _Base(forms.Form):
    # Hidden sections of the dialog must not block the other platform's submit button.
    use_required_attribute = False

    permission = forms.ChoiceField(label="Permissions", choices=Mailbox.Permission.choices,
                                   widget=forms.RadioSelect, initial=Mailbox.Permission.SEND_AND_READ)
    post_processing = forms.ChoiceField(label="Post Processing Actions", choices=Mailbox.PostProcessing.choices,
                                        widget=forms.RadioSelect, initial=Mailbox.PostProcessing.NOTHING)
    display_name = forms.CharField(max_length=200, required=False, label="Display name")
    from_address = forms.EmailField(required=False, label="From address",
                                    help_text="Leave empty to send from the mailbox's own address.")


class _ImapFields(forms.Form):
    use_required_attribute = False

    imap_host = forms.CharField(max_length=253, required=False, label="IMAP host")
    imap_port = forms.IntegerField(min_value=1, max_value=65535, required=False, initial=993, label="IMAP port")
    imap_security = forms.ChoiceField(choices=Security.choices, initial=Security.SSL, required=False,
                                      label="IMAP encryption")
    smtp_host = forms.CharField(max_length=253, required=False, label="SMTP host")
    smtp_port = forms.IntegerField(min_value=1, max_value=65535, required=False, initial=587, label="SMTP port")
    smtp_security = forms.ChoiceField(choices=Security.choices, initial=Security.STARTTLS, required=False,
                                      label="SMTP encryption")
    username = forms.CharField(max_length=254, required=False, label="Username",
                               help_text="Leave empty to log in with the e-mail address.")
    password = forms.CharField(max_length=1000, required=False, strip=False, label="Password",
                               widget=forms.PasswordInput(render_value=False))


class MailboxConnectForm(_Base, _ImapFields):
    """The "Edit Mailbox Connection" dialog for a new mailbox."""

    provider = forms.ChoiceField(label="Platform", choices=PLATFORMS, widget=forms.RadioSelect,
                                 initial=Provider.IMAP)
    email_address = forms.EmailField(label="E-mail address")

    field_order = ["provider", "permission", "post_processing", "email_address", "display_name", "from_address"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("provider") == Provider.IMAP:
            reads = data.get("permission") == Mailbox.Permission.SEND_AND_READ
            data["imap_security"] = data.get("imap_security") or Security.SSL
            data["smtp_security"] = data.get("smtp_security") or Security.STARTTLS
            for name in IMAP_REQUIRED:
                if name.startswith("imap_") and not reads:
                    continue
                if data.get(name) in (None, ""):
                    self.add_error(name, "This field is required.")
        return data


class MailboxEditForm(_Base, _ImapFields):
    """Editing a connected mailbox; an empty password keeps the stored one."""

    def __init__(self, *args: Any, mailbox: Mailbox, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mailbox = mailbox
        if mailbox.provider != Provider.IMAP:
            for name in list(_ImapFields.base_fields):
                del self.fields[name]
        else:
            self.fields["password"].help_text = "Leave empty to keep the current password."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.mailbox.provider == Provider.IMAP:
            reads = data.get("permission") == Mailbox.Permission.SEND_AND_READ
            data["imap_security"] = data.get("imap_security") or self.mailbox.imap_security
            data["smtp_security"] = data.get("smtp_security") or self.mailbox.smtp_security
            for name in ("imap_host", "imap_port", "smtp_host", "smtp_port"):
                if name.startswith("imap_") and not reads:
                    continue
                if data.get(name) in (None, ""):
                    self.add_error(name, "This field is required.")
        return data

    def changes(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data.pop("password", None)
        if self.mailbox.provider == Provider.IMAP:
            if data.get("imap_port") is None:
                data["imap_port"] = self.mailbox.imap_port
            data["username"] = data.get("username") or self.mailbox.email_address
        return data


def initial_for(mailbox: Mailbox) -> dict[str, Any]:
    fields = ["permission", "post_processing", "display_name", "from_address", "imap_host", "imap_port",
              "imap_security", "smtp_host", "smtp_port", "smtp_security", "username"]
    return {name: getattr(mailbox, name) for name in fields}
