"""The words the UI shows for the API's enum values (grades, conditions, decisions, statuses,
resolutions, reasons, functional checks), marked for the catalog. The UI shows a value
through ``pretty`` (its underscores as spaces, through gettext); the API keeps the English
enums. tests/serve/test_ui_i18n.py checks that every value of the enums is here."""

from serve.ui.i18n import N_

#: Both shipped grade scales (fusion/configs), best to worst.
GRADES = (N_("excellent"), N_("good"), N_("fair"), N_("broken"),
          N_("A"), N_("B"), N_("C"), N_("D"), N_("E"))
CONDITIONS = (N_("flawless"), N_("light scratches"), N_("heavy scratches"), N_("cracked"),
              N_("light wear"), N_("heavy wear"))
DECISIONS = (N_("validated"), N_("suggestion"), N_("justification required"),
             N_("inconclusive"))
STATUSES = (N_("awaiting refurbisher"), N_("awaiting justification"), N_("in review"),
            N_("listed"))
RESOLUTIONS = (N_("accepted"), N_("kept"), N_("approved"), N_("overridden"))
RETURN_REASONS = (N_("cosmetic worse than described"), N_("functional fault"), N_("battery"),
                  N_("changed mind"), N_("not as described"), N_("damaged in transit"),
                  N_("other"), N_("returns"), N_("claims"))
PHOTO_REASONS = (N_("too small"), N_("too dark"), N_("overexposed"), N_("blurry"),
                 N_("compressed"), N_("noisy"), N_("not a phone"), N_("wrong side"),
                 N_("duplicate"))
#: tabular.schema.CHECK_LABELS, the functional checklist's labels.
CHECKS = (N_("Power on/off and charging"), N_("SIM tray present"), N_("Front camera"),
          N_("Rear camera"), N_("Speakers"), N_("Microphones"), N_("Touch ID / Face ID"),
          N_("Wi-Fi"), N_("Bluetooth"), N_("Buttons"))
#: The grade's limiting rules (fusion.policy reasons' ``rule``), the parts and views, the
#: dashboard's categories (serve/dashboard.py CATEGORIES).
RULES = (N_("screen"), N_("shell"), N_("functional"), N_("failed checks"),
         N_("battery health"), N_("front"), N_("back"))
ROLES = (N_("refurbisher"), N_("platform"), N_("reviewer"), N_("admin"))
