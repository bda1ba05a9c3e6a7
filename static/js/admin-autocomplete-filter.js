'use strict';
// The admin's autocomplete filters (billing/admin.py): choosing a row reloads the list filtered by it.
{
    const $ = django.jQuery;

    $(function() {
        // select2 reports a choice with jQuery's change event, which addEventListener does not see.
        $('form.autocomplete-filter select').on('change', function() {
            // Cleared: the filter is left out, rather than sent empty (an invalid id).
            this.disabled = !this.value;
            this.form.submit();
        });
    });
}
